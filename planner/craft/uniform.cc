#include "planner/craft/uniform.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/benefit.h"
#include "planner/eplb/eplb.h"
#include "planner/replay.h"

namespace craft::planner {
namespace {

// A layer's replayed balancedness over the trace's windows.
double ReplayedBalancedness(const LayerPlacement& placement, const LoadTrace& trace, int layer) {
  return ReplayLayer(LayerReplay(placement, trace.num_experts()), trace, layer).balancedness;
}

// Whether any GPU of `placement` holds two replicas of one expert.
bool HasDuplicateOnGpu(const LayerPlacement& placement) {
  int slot = 0;
  for (int count : placement.slots_per_gpu) {
    std::vector<int> held(placement.phy2log.begin() + slot,
                          placement.phy2log.begin() + slot + count);
    std::sort(held.begin(), held.end());
    if (std::adjacent_find(held.begin(), held.end()) != held.end()) return true;
    slot += count;
  }
  return false;
}

}  // namespace

absl::StatusOr<int> UniformRedundantPerLayer(int num_experts, const PlanOptions& options) {
  const int gpus = options.cluster.num_gpus;
  const int redundant = options.redundant_per_layer.value_or(gpus);
  if (redundant < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("redundant slots per layer must be >= 0, got ", redundant));
  }
  if ((num_experts + redundant) % gpus != 0) {
    const int below = redundant - (num_experts + redundant) % gpus;
    const int above = below + gpus;
    return absl::InvalidArgumentError(absl::StrCat(
        "a uniform layout needs the same slots on every GPU, but ", num_experts, " experts + ",
        redundant, " redundant slots per layer do not divide over ", gpus, " GPUs (try ",
        below >= 0 ? absl::StrCat(below, " or ") : "", above, " redundant slots per layer)"));
  }
  return redundant;
}

absl::StatusOr<PlanResult> PlanCraftUniform(const LoadTrace& trace, const PlanOptions& options) {
  CRAFT_ASSIGN_OR_RETURN(const int redundant,
                         UniformRedundantPerLayer(trace.num_experts(), options));
  const ClusterShape& cluster = options.cluster;
  const int slots = trace.num_experts() + redundant;
  const std::vector<int> slots_per_gpu(cluster.num_gpus, slots / cluster.num_gpus);
  const PackingOptions packing{options.forbid_duplicates};
  // EPLB's plan on the same slots, the floor every layer must reach.
  CRAFT_ASSIGN_OR_RETURN(Layout eplb, PlanEplb(trace, slots, options.num_groups, cluster));

  PlanResult result;
  result.layout.num_experts = trace.num_experts();
  result.layout.cluster = cluster;
  for (int l = 0; l < trace.num_layers(); ++l) {
    CRAFT_ASSIGN_OR_RETURN(LayerPlacement craft, PlaceLayer(trace.aggregate(l), redundant,
                                                            slots_per_gpu, cluster, packing));
    LayerPlacement& floor = eplb.layers[l];
    const bool eplb_allowed = !options.forbid_duplicates || !HasDuplicateOnGpu(floor);
    if (eplb_allowed &&
        ReplayedBalancedness(floor, trace, l) > ReplayedBalancedness(craft, trace, l)) {
      result.layout.layers.push_back(std::move(floor));
      ++result.uniform_layers_from_eplb;
    } else {
      result.layout.layers.push_back(std::move(craft));
    }
  }
  result.replicas_per_layer.assign(trace.num_layers(), redundant);
  result.budget =
      static_cast<int>(static_cast<int64_t>(redundant) * trace.num_layers() / cluster.num_gpus);
  return result;
}

}  // namespace craft::planner
