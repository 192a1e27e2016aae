#include "tools/evaluate/measure.h"

#include <algorithm>

#include "common/status_macros.h"

namespace craft::evaluate {

planner::ClusterShape ClusterFor(int gpus) { return {gpus, std::max(1, gpus / 8)}; }

planner::PlanOptions OptionsFor(planner::Algorithm algorithm, int gpus, EplbPolicy policy) {
  planner::PlanOptions options;
  options.algorithm = algorithm;
  options.cluster = ClusterFor(gpus);
  options.num_groups = policy == EplbPolicy::kHierarchical ? options.cluster.num_nodes : 1;
  return options;
}

absl::StatusOr<Measured> PlanAndMeasure(const Workload& workload,
                                        const planner::PlanOptions& options) {
  Measured measured;
  CRAFT_ASSIGN_OR_RETURN(measured.plan, planner::Plan(workload.plan, options));
  CRAFT_ASSIGN_OR_RETURN(measured.on_plan,
                         planner::EvaluateLayout(measured.plan.layout, workload.plan));
  if (workload.synthetic) {
    CRAFT_ASSIGN_OR_RETURN(measured.on_eval,
                           planner::EvaluateLayout(measured.plan.layout, workload.eval));
  } else {
    measured.on_eval = measured.on_plan;  // one aggregate: nothing held out
  }
  return measured;
}

int64_t MaxSlotsPerGpu(const planner::Layout& layout) {
  int64_t most = 0;
  for (int g = 0; g < layout.cluster.num_gpus; ++g) {
    most = std::max<int64_t>(most, layout.SlotsOnGpu(g));
  }
  return most;
}

double KvTokensPerGpu(const planner::MemoryModel& memory, int64_t slots_per_gpu) {
  const double kv_bytes = memory.hbm_bytes - memory.non_expert_bytes -
                          static_cast<double>(slots_per_gpu) * memory.bytes_per_expert;
  return std::max(0.0, kv_bytes / memory.kv_bytes_per_token);
}

int FocusGpus(const Workload& workload, int target) {
  int best = 0;
  for (int gpus : workload.gpu_counts) {
    if (gpus <= target) best = std::max(best, gpus);
  }
  if (best > 0 || workload.gpu_counts.empty()) return best;
  return *std::min_element(workload.gpu_counts.begin(), workload.gpu_counts.end());
}

}  // namespace craft::evaluate
