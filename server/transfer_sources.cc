#include "server/transfer_sources.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/transfer/transfer_plan.h"

namespace craft::server {
namespace {

// Slot offsets of a few layouts, per layer, computed once: the GPUs serve a
// handful of versions, and looking a GPU's slots up from scratch costs O(D),
// which over every GPU of every layer took most of an apply's start at 4,096
// GPUs.
class SlotOffsetCache {
 public:
  const std::vector<int>& Of(const planner::Layout& layout, int layer) {
    std::vector<std::vector<int>>& layers = offsets_[&layout];
    if (layers.empty()) layers.resize(layout.num_layers());
    if (layers[layer].empty()) layers[layer] = layout.layers[layer].SlotOffsets();
    return layers[layer];
  }

 private:
  absl::flat_hash_map<const planner::Layout*, std::vector<std::vector<int>>> offsets_;
};

// The weights present on the GPUs now, as one layout: GPU g's slots are those
// of g in the layout it serves (none when that is unknown).
planner::Layout PresentWeights(const planner::Layout& target,
                               const std::vector<ServingGpu>& serving, SlotOffsetCache& offsets) {
  planner::Layout present;
  present.num_experts = target.num_experts;
  present.cluster = target.cluster;
  present.layers.resize(target.num_layers());
  for (int l = 0; l < target.num_layers(); ++l) {
    planner::LayerPlacement& layer = present.layers[l];
    for (const ServingGpu& gpu : serving) {
      const int g = static_cast<int>(layer.slots_per_gpu.size());
      if (gpu.layout == nullptr) {
        layer.slots_per_gpu.push_back(0);
        continue;
      }
      const planner::LayerPlacement& source = gpu.layout->layers[l];
      const int offset = offsets.Of(*gpu.layout, l)[g];
      layer.slots_per_gpu.push_back(source.slots_per_gpu[g]);
      layer.phy2log.insert(layer.phy2log.end(), source.phy2log.begin() + offset,
                           source.phy2log.begin() + offset + source.slots_per_gpu[g]);
    }
  }
  return present;
}

}  // namespace

absl::StatusOr<SourcedTransfers> PlanSourcedTransfers(const planner::Layout& target,
                                                      const std::vector<ServingGpu>& serving,
                                                      int64_t bytes_per_expert) {
  if (static_cast<int>(serving.size()) != target.cluster.num_gpus) {
    return absl::InvalidArgumentError(absl::StrCat("serving versions for ", serving.size(),
                                                   " GPUs, expected ", target.cluster.num_gpus));
  }
  for (const ServingGpu& gpu : serving) {
    if (gpu.layout != nullptr) {
      CRAFT_RETURN_IF_ERROR(planner::CheckLayoutShape(absl::StrCat("layout ", gpu.version),
                                                      gpu.layout->shape(), "the target's",
                                                      target.shape()));
    }
  }
  SlotOffsetCache offsets;
  const planner::Layout present = PresentWeights(target, serving, offsets);
  if (absl::Status holders = present.Validate(); !holders.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot source every expert from GPUs with a known layout: ", holders.message()));
  }
  CRAFT_ASSIGN_OR_RETURN(planner::TransferPlan plan,
                         planner::BuildTransferPlan(present, target, bytes_per_expert));
  SourcedTransfers result;
  result.max_bytes_received_by_a_gpu = plan.max_bytes_received_by_a_gpu;
  result.transfers.reserve(plan.transfers.size());
  for (const planner::Transfer& transfer : plan.transfers) {
    const ServingGpu& source = serving[transfer.src_gpu];
    // Re-index the source slot from the present-weights layout into the
    // layout of the version the source GPU serves.
    const int index_on_gpu =
        transfer.src_slot - offsets.Of(present, transfer.layer)[transfer.src_gpu];
    craft::v1::Transfer& out = result.transfers.emplace_back();
    out.set_layer(transfer.layer);
    out.set_expert(transfer.expert);
    out.set_dst_gpu(transfer.dst_gpu);
    out.set_dst_slot(transfer.dst_slot);
    out.set_src_gpu(transfer.src_gpu);
    out.set_src_slot(offsets.Of(*source.layout, transfer.layer)[transfer.src_gpu] + index_on_gpu);
    out.set_src_version(source.version);
  }
  return result;
}

}  // namespace craft::server
