// Experiment 4: modelled throughput against the budget R. Replicas cost the
// KV cache memory, so throughput is modelled as KV tokens per GPU / step time
// (concurrency is KV bound; a step waits for the busiest GPU), relative to
// placement only. Auto-R's sweep (predicted from the benefit curves on the
// planning windows) next to measured points (step times replayed on the
// evaluation windows) for CRA8, auto-R and EPLB (both policies), per GPU
// memory.
#ifndef CRAFT_TOOLS_EVALUATE_THROUGHPUT_VS_BUDGET_H_
#define CRAFT_TOOLS_EVALUATE_THROUGHPUT_VS_BUDGET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/plan.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

// One point of auto-R's sweep.
struct SweepRow {
  std::string workload;
  std::string gpu;  // GpuMemory::key
  int gpus = 0;
  planner::BudgetPoint point;
};

// A measured layout under one memory model.
struct ThroughputPoint {
  int budget = 0;             // R (EPLB: L)
  int64_t slots_per_gpu = 0;  // expert slots on the fullest GPU
  double kv_tokens_per_gpu = 0;
  double step_time = 0;            // evaluation windows
  double relative_throughput = 0;  // vs placement only under the same memory
};

struct ThroughputRow {
  std::string workload;
  std::string gpu;
  int gpus = 0;
  bool fits = false;  // the weights leave room for a KV cache at R = 0
  int auto_budget = 0;
  double auto_predicted = 0;  // auto-R's own predicted relative throughput
  // craft: the focus budget; eplb: hierarchical, eplb_global: global policy.
  ThroughputPoint none, craft, automatic, eplb, eplb_global;
};

struct ThroughputResult {
  std::vector<SweepRow> sweep;
  std::vector<ThroughputRow> rows;
};

// Every synthetic workload (recorded traces have no memory model) at every D,
// under every GPU memory of `config`.
absl::StatusOr<ThroughputResult> RunThroughputVsBudget(const ScaleConfig& config,
                                                       const std::vector<Workload>& workloads);

Table SweepTable(const ThroughputResult& result);
Table ThroughputTable(const ThroughputResult& result);    // CSV of the measured points
Table ThroughputSummary(const ThroughputResult& result);  // Markdown

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_THROUGHPUT_VS_BUDGET_H_
