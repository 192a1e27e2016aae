#include "planner/layout.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::planner {

std::string LayoutShape::ToString() const {
  return absl::StrCat(num_layers, " layers x ", num_experts, " experts on ", num_gpus, " GPUs / ",
                      num_nodes, " nodes");
}

absl::Status CheckLayoutShape(absl::string_view what, const LayoutShape& actual,
                              absl::string_view expected_what, const LayoutShape& expected) {
  if (actual == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " has shape ", actual.ToString(), "; ",
                                                 expected_what, " is ", expected.ToString()));
}

int LayerPlacement::SlotOffset(int gpu) const {
  return std::accumulate(slots_per_gpu.begin(), slots_per_gpu.begin() + gpu, 0);
}

std::vector<int> LayerPlacement::SlotOffsets() const {
  std::vector<int> offsets(slots_per_gpu.size() + 1, 0);
  std::partial_sum(slots_per_gpu.begin(), slots_per_gpu.end(), offsets.begin() + 1);
  return offsets;
}

std::vector<int> LayerPlacement::SlotGpus() const {
  std::vector<int> gpus;
  gpus.reserve(phy2log.size());
  for (int g = 0; g < static_cast<int>(slots_per_gpu.size()); ++g) {
    gpus.insert(gpus.end(), slots_per_gpu[g], g);
  }
  return gpus;
}

std::vector<int> LayerPlacement::LogicalCounts(int num_experts) const {
  std::vector<int> counts(num_experts, 0);
  for (int e : phy2log) ++counts[e];
  return counts;
}

std::vector<std::vector<int>> LayerPlacement::LogicalToPhysical(int num_experts) const {
  std::vector<std::vector<int>> slots(num_experts);
  for (int p = 0; p < num_slots(); ++p) slots[phy2log[p]].push_back(p);
  return slots;
}

int Layout::SlotsOnGpu(int gpu) const {
  int total = 0;
  for (const LayerPlacement& layer : layers) total += layer.slots_per_gpu[gpu];
  return total;
}

int Layout::TotalRedundantSlots() const {
  int total = 0;
  for (const LayerPlacement& layer : layers) total += layer.num_slots() - num_experts;
  return total;
}

bool Layout::HasUniformSlots() const {
  for (const LayerPlacement& layer : layers) {
    for (int s : layer.slots_per_gpu) {
      if (s != layer.slots_per_gpu[0] || s != layers[0].slots_per_gpu[0]) return false;
    }
  }
  return true;
}

absl::Status Layout::Validate(bool allow_duplicates_on_gpu) const {
  CRAFT_RETURN_IF_ERROR(cluster.Validate());
  if (num_experts <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_experts must be positive, got ", num_experts));
  }
  if (layers.empty()) return absl::InvalidArgumentError("a layout needs at least one layer");
  for (int l = 0; l < num_layers(); ++l) {
    const LayerPlacement& layer = layers[l];
    if (static_cast<int>(layer.slots_per_gpu.size()) != cluster.num_gpus) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": slots_per_gpu has ",
                                                     layer.slots_per_gpu.size(),
                                                     " entries, expected ", cluster.num_gpus));
    }
    int64_t total = 0;
    for (int g = 0; g < cluster.num_gpus; ++g) {
      if (layer.slots_per_gpu[g] < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", l, ": GPU ", g, " has a negative slot count"));
      }
      total += layer.slots_per_gpu[g];
    }
    if (total != layer.num_slots()) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": slots_per_gpu sums to ", total,
                                                     " but phy2log has ", layer.num_slots(),
                                                     " slots"));
    }
    // Per-expert state only up to the largest expert the layer holds, not
    // num_experts: a layout off the wire may claim 2^31 - 1 experts over a
    // few slots, and refusing it must not cost 16 GB.
    int held = 0;
    for (int e : layer.phy2log) {
      if (e >= 0 && e < num_experts) held = std::max(held, e + 1);
    }
    std::vector<int> seen_on_gpu(held, -1);
    std::vector<int> count(held, 0);
    int slot = 0;
    for (int g = 0; g < cluster.num_gpus; ++g) {
      for (int s = 0; s < layer.slots_per_gpu[g]; ++s, ++slot) {
        const int e = layer.phy2log[slot];
        if (e < 0 || e >= num_experts) {
          return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": slot ", slot,
                                                         " holds expert ", e, ", outside [0, ",
                                                         num_experts, ")"));
        }
        if (!allow_duplicates_on_gpu && seen_on_gpu[e] == g) {
          return absl::InvalidArgumentError(
              absl::StrCat("layer ", l, ": GPU ", g, " holds two replicas of expert ", e));
        }
        seen_on_gpu[e] = g;
        ++count[e];
      }
    }
    for (int e = 0; e < num_experts; ++e) {  // ends at `held` at the latest
      if (e >= held || count[e] == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer ", l, ": expert ", e, " has no replica"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace craft::planner
