#include "planner/craft/benefit.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/slot_assignment.h"
#include "planner/parallel.h"
#include "planner/replay.h"
#include "planner/replicate.h"

namespace craft::planner {

std::vector<int> DefaultCandidates(int num_gpus) {
  constexpr int kDenseHead = kEveryCandidateUpToGpus / 2;
  std::vector<int> candidates;
  if (num_gpus <= kEveryCandidateUpToGpus) {
    for (int r = 0; r <= num_gpus; ++r) candidates.push_back(r);
    return candidates;
  }
  for (int r = 0; r <= kDenseHead; ++r) candidates.push_back(r);
  const int64_t span = num_gpus - kDenseHead;
  for (int step = 1; step <= kDenseHead; ++step) {
    candidates.push_back(kDenseHead + static_cast<int>(span * step / kDenseHead));
  }
  return candidates;
}

absl::StatusOr<std::vector<int>> NormalizeCandidates(std::vector<int> candidates, int num_experts,
                                                     int num_gpus) {
  const int64_t max_redundant = static_cast<int64_t>(num_experts) * (num_gpus - 1);
  for (int r : candidates) {
    if (r < 0 || r > max_redundant) {
      return absl::InvalidArgumentError(absl::StrCat("candidate replica count ", r,
                                                     " is outside [0, ", max_redundant,
                                                     "] (at most one replica per expert per GPU)"));
    }
  }
  candidates.push_back(0);
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  return candidates;
}

absl::StatusOr<LayerPlacement> PlaceLayer(absl::Span<const int64_t> weight, int redundant,
                                          const std::vector<int>& slots_per_gpu,
                                          const ClusterShape& cluster,
                                          const PackingOptions& options) {
  const int num_physical = static_cast<int>(weight.size()) + redundant;
  CRAFT_ASSIGN_OR_RETURN(Replication replication,
                         ReplicateExperts(weight, num_physical, cluster.num_gpus));
  return PackLayer(weight, replication, slots_per_gpu, cluster, options);
}

absl::StatusOr<std::vector<BenefitCurve>> ComputeBenefitCurves(
    const LoadTrace& trace, const ClusterShape& cluster, const std::vector<int>& candidates,
    const PackingOptions& options, int threads, const RooflineModel* roofline) {
  CRAFT_RETURN_IF_ERROR(cluster.Validate());
  const int num_experts = trace.num_experts();
  CRAFT_ASSIGN_OR_RETURN(std::vector<int> replicas,
                         NormalizeCandidates(candidates, num_experts, cluster.num_gpus));
  // One layer's slot split for each candidate; it does not depend on the layer.
  std::vector<std::vector<int>> even_slots;
  for (int r : replicas) {
    CRAFT_ASSIGN_OR_RETURN(auto slots, AssignSlots({num_experts + r}, cluster));
    even_slots.push_back(std::move(slots[0]));
  }
  std::vector<BenefitCurve> curves(trace.num_layers());
  CRAFT_RETURN_IF_ERROR(ParallelFor(trace.num_layers(), threads, [&](int l) -> absl::Status {
    BenefitCurve& curve = curves[l];
    curve.replicas = replicas;
    // Candidates ascend, so one replication grows through all of them: the
    // same result as PlaceLayer's, without starting over per candidate.
    Replicator replicator(trace.aggregate(l), cluster.num_gpus);
    const LayerWindows windows(trace, l);
    for (size_t k = 0; k < replicas.size(); ++k) {
      CRAFT_RETURN_IF_ERROR(replicator.GrowTo(num_experts + replicas[k]));
      CRAFT_ASSIGN_OR_RETURN(
          LayerPlacement placement,
          PackLayer(trace.aggregate(l), replicator.replication(), even_slots[k], cluster, options));
      const LayerStats stats = LayerReplay(placement, num_experts).Replay(windows);
      curve.balancedness.push_back(stats.balancedness);
      curve.max_gpu_load.push_back(stats.max_gpu_load);
      if (roofline != nullptr)
        curve.modelled_us.push_back(roofline->MeanLayerUs(placement, trace, l));
    }
    return absl::OkStatus();
  }));
  return curves;
}

}  // namespace craft::planner
