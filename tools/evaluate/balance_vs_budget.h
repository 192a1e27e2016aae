// Experiment 1: balancedness against the replica budget R (redundant slots per
// GPU over all layers) for placement only, DeepSeek EPLB, the paper's
// heuristic and craft's DP, on every workload and GPU count.
#ifndef CRAFT_TOOLS_EVALUATE_BALANCE_VS_BUDGET_H_
#define CRAFT_TOOLS_EVALUATE_BALANCE_VS_BUDGET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/plan.h"
#include "tools/evaluate/objective.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

// Algorithm labels in the results.
inline constexpr char kNone[] = "none";
inline constexpr char kEplb[] = "eplb";               // hierarchical, groups = nodes
inline constexpr char kEplbGlobal[] = "eplb-global";  // one group
inline constexpr char kCraft[] = "craft";
inline constexpr char kCraftPaper[] = "craft-paper";

struct BalancePoint {
  std::string workload;
  int gpus = 0;
  std::string algorithm;
  int budget = 0;               // R; EPLB's is r x L / D
  int64_t redundant_slots = 0;  // over all layers
  double plan_balancedness = 0;
  double eval_balancedness = 0;
  double eval_worst_layer = 0;
  double eval_step_time = 0;  // tokens: sum over layers of the busiest GPU's
  std::vector<int> replicas_per_layer;
};

struct HeuristicObjective {
  std::string workload;
  int gpus = 0;
  int budget = 0;  // the heuristic's R after rounding
  ObjectiveComparison comparison;
};

struct BalanceResult {
  std::vector<BalancePoint> points;
  std::vector<HeuristicObjective> objectives;
};

// Plans `workload` on `gpus` GPUs with `options` and replays it; `label` names
// the algorithm in the result.
absl::StatusOr<BalancePoint> MeasurePoint(const Workload& workload,
                                          const planner::PlanOptions& options,
                                          const std::string& label);

// CRAFT's DP at budget R.
absl::StatusOr<BalancePoint> MeasureCraft(const Workload& workload, int gpus, int budget);

// Per workload and D: placement only; EPLB (hierarchical and global) with 0
// and D redundant slots per layer; the heuristic; the DP at every budget of
// the config, at R = L (EPLB's memory) and at the heuristic's R.
absl::StatusOr<BalanceResult> RunBalanceVsBudget(const ScaleConfig& config,
                                                 const std::vector<Workload>& workloads);

// The point of `algorithm` at `budget` (-1: any budget), or nullptr.
const BalancePoint* FindPoint(const BalanceResult& result, const std::string& workload, int gpus,
                              const std::string& algorithm, int budget = -1);

Table BalanceTable(const BalanceResult& result);    // every point
Table BalanceSummary(const BalanceResult& result);  // one row per workload and D
Table ObjectiveTable(const BalanceResult& result);  // heuristic vs DP

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_BALANCE_VS_BUDGET_H_
