#include "gpu_worker/local_layout.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace craft::gpu_worker {

LocalLayout LocalLayout::Of(const planner::Layout& layout, std::string version, int gpu) {
  LocalLayout local;
  local.version = std::move(version);
  local.layers.reserve(layout.layers.size());
  for (const planner::LayerPlacement& layer : layout.layers) {
    const int first = layer.SlotOffset(gpu);
    const auto begin = layer.phy2log.begin() + first;
    local.layers.push_back({first, {begin, begin + layer.slots_per_gpu[gpu]}});
  }
  return local;
}

int LocalLayout::total_slots() const {
  int total = 0;
  for (const LocalLayer& layer : layers) total += layer.num_slots();
  return total;
}

absl::Status LocalLayout::CheckSlot(int layer, int slot) const {
  if (layer < 0 || layer >= num_layers() || slot < 0 || slot >= layers[layer].num_slots()) {
    return absl::OutOfRangeError(
        absl::StrCat("no local slot ", slot, " in layer ", layer, " of version ", version));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LocalLayout::Resolve(int layer, int global_slot, int expert) const {
  if (layer < 0 || layer >= num_layers()) {
    return absl::NotFoundError(
        absl::StrCat("layer ", layer, " is outside [0, ", num_layers(), ")"));
  }
  const LocalLayer& here = layers[layer];
  const int local = global_slot - here.first_slot;
  if (local < 0 || local >= here.num_slots()) {
    return absl::NotFoundError(absl::StrCat(
        "slot ", global_slot, " of layer ", layer, " is not on this GPU in version ", version,
        " (its slots are [", here.first_slot, ", ", here.first_slot + here.num_slots(), "))"));
  }
  if (here.experts[local] != expert) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", global_slot, " of layer ", layer,
                                                      " holds expert ", here.experts[local],
                                                      " in version ", version, ", not ", expert));
  }
  return local;
}

}  // namespace craft::gpu_worker
