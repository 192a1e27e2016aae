#include "planner/craft/paper_heuristic.h"

#include <algorithm>
#include <numeric>

#include "common/status_macros.h"
#include "planner/craft/benefit.h"
#include "planner/craft/craft_planner.h"

namespace craft::planner {
namespace {

// b(r, l) for every curve index k >= 1 (r = replicas[k]).
double PerReplicaBenefit(const BenefitCurve& curve, size_t k) {
  return (curve.balancedness[k] - curve.balancedness[0]) / curve.replicas[k];
}

double MeanPerReplicaBenefit(const std::vector<BenefitCurve>& curves) {
  double sum = 0.0;
  int terms = 0;
  for (const BenefitCurve& curve : curves) {
    for (size_t k = 1; k < curve.replicas.size(); ++k, ++terms) sum += PerReplicaBenefit(curve, k);
  }
  return terms > 0 ? sum / terms : 0.0;
}

}  // namespace

const std::vector<int>& PaperCandidates() {
  static const std::vector<int> kCandidates = {0, 4, 8, 16, 32};
  return kCandidates;
}

std::vector<int> SelectPaperReplicas(const std::vector<BenefitCurve>& curves) {
  const double threshold = MeanPerReplicaBenefit(curves);
  std::vector<int> plan;
  for (const BenefitCurve& curve : curves) {
    int pick = 0;
    double running_max = 0.0;
    bool high = false;
    for (size_t k = 1; k < curve.replicas.size(); ++k) {
      const int r = curve.replicas[k];
      const double b = PerReplicaBenefit(curve, k);
      if (!high && r <= 16) {
        if (b >= threshold / 2) {
          pick = r;  // the artifact leaves running_max alone here
        } else if (b > running_max) {
          running_max = b;
          pick = r;
        }
      }
      if (b >= threshold) {
        pick = r;
        high = true;
      }
    }
    plan.push_back(pick);
  }
  return plan;
}

absl::StatusOr<PlanResult> PlanCraftPaper(const LoadTrace& trace, const PlanOptions& options) {
  const PackingOptions packing{options.forbid_duplicates};
  // Small test shapes cannot hold 32 redundant slots in a layer; drop what
  // does not fit rather than fail (the artifact assumes 64 GPUs).
  std::vector<int> candidates;
  const int64_t max_redundant =
      static_cast<int64_t>(trace.num_experts()) * (options.cluster.num_gpus - 1);
  for (int r : PaperCandidates()) {
    if (r <= max_redundant) candidates.push_back(r);
  }
  PlanResult result;
  CRAFT_ASSIGN_OR_RETURN(result.curves, ComputeBenefitCurves(trace, options.cluster, candidates,
                                                             packing, options.threads));
  const int64_t base_slots = static_cast<int64_t>(trace.num_layers()) * trace.num_experts();
  result.replicas_per_layer =
      RoundFinalAlloc(SelectPaperReplicas(result.curves), options.cluster.num_gpus, base_slots);
  const int64_t redundant = std::accumulate(result.replicas_per_layer.begin(),
                                            result.replicas_per_layer.end(), int64_t{0});
  result.budget =
      static_cast<int>((redundant + options.cluster.num_gpus - 1) / options.cluster.num_gpus);
  CRAFT_ASSIGN_OR_RETURN(
      result.layout,
      BuildLayout(trace, options.cluster, result.replicas_per_layer, packing, options.threads));
  return result;
}

}  // namespace craft::planner
