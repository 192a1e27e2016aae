// Experiment 5: re-planning under drift. The windows of a synthetic trace are
// cut into consecutive periods; each period is planned afresh and the layout
// is applied over the previous one, either as planned or stabilised against
// it. Reported per re-plan: slots and bytes moved, and the balancedness the
// layout keeps on the NEXT period (which it has not seen), next to a layout
// that is never re-planned.
#ifndef CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_
#define CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/transfer/stabilize.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

// What applying one layout over the committed one costs.
struct MoveCost {
  planner::MoveStats moves;
  int64_t bytes_intra_node = 0;
  int64_t bytes_inter_node = 0;
  int64_t bytes_local = 0;
  int64_t max_bytes_into_gpu = 0;
};

struct ReplanRow {
  std::string workload;
  std::string algorithm;  // kCraft (focus budget) or kEplb
  int gpus = 0;
  int period = 0;   // the period planned on (>= 1: the first re-plan)
  MoveCost raw;     // the fresh plan applied as planned
  MoveCost stable;  // stabilised against the committed layout
  // Mean balancedness on period + 1.
  double next_raw = 0;
  double next_stable = 0;
  double next_static = 0;  // the layout of period 0, never re-planned
};

// Every synthetic workload at FocusGpus(config.focus_gpus), CRAFT at the
// focus budget and EPLB; config.drift_periods periods.
absl::StatusOr<std::vector<ReplanRow>> RunReplanDrift(const ScaleConfig& config,
                                                      const std::vector<Workload>& workloads);

// Means over the re-plans of one workload and algorithm (rows are grouped
// that way by RunReplanDrift); GB are bytes over links, local copies excluded.
struct ReplanMeans {
  std::string workload;
  std::string algorithm;
  int gpus = 0;
  int replans = 0;
  double slots_raw = 0;
  double slots_stable = 0;
  double gb_raw = 0;
  double gb_stable = 0;
  double gb_stable_cross_node = 0;
  double max_gb_into_gpu = 0;      // stabilised
  double next_balancedness = 0;    // re-planned (stabilised or not: the same)
  double static_balancedness = 0;  // never re-planned
};

std::vector<ReplanMeans> SummariseReplans(const std::vector<ReplanRow>& rows);

Table ReplanTable(const std::vector<ReplanRow>& rows);
// SummariseReplans as a table.
Table ReplanSummary(const std::vector<ReplanRow>& rows);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_
