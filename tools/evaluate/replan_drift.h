// Experiment 5: re-planning under drift. The windows of a synthetic trace are
// cut into consecutive periods; at every period each method re-plans from
// the layout it committed at the previous one:
//
//  - fresh:       CRAFT plans afresh and the layout is applied as planned;
//  - stabilised:  the same plan, stabilised against the committed layout
//                 (whole GPU bins relabelled so experts stay put);
//  - incremental: PlanIncremental from the committed layout, at the frontier
//                 point within a moved-fraction limit (5%, 10%, ... none).
//
// Moved is Movement's (planner/transfer/movement.h): replicas a GPU did not
// hold before, as a fraction of the slots, and the most bytes into one GPU.
// Balancedness is measured on the period planned on and on the NEXT one
// (held out), next to the committed layout kept unchanged ("old"); the share
// of the fresh plan's gain over the old layout a method keeps is
// (method - old) / (fresh - old). Hierarchical EPLB is re-planned fresh and
// stabilised for comparison.
#ifndef CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_
#define CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/table.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

inline constexpr char kFresh[] = "fresh";
inline constexpr char kStabilised[] = "stabilised";
inline constexpr char kIncremental[] = "incremental";

// The incremental limits evaluated (fractions of the slots; 1 is none).
std::vector<double> IncrementalLimits();

struct ReplanRow {
  std::string workload;
  std::string algorithm;  // kCraft (focus budget) or kEplb
  std::string method;     // kFresh, kStabilised or kIncremental
  double limit = 1;       // incremental: the moved-fraction limit (1: none)
  int gpus = 0;
  int period = 0;  // the period planned on (>= 1: the first re-plan)
  int64_t moved_replicas = 0;
  double moved_fraction = 0;
  int64_t max_bytes_into_gpu = 0;
  // Balancedness on the period planned on and on the next one: of the
  // method's layout, of the layout it replaced, and of the fresh plan.
  double planned = 0;
  double next = 0;
  double old_planned = 0;
  double old_next = 0;
  double fresh_planned = 0;
  double fresh_next = 0;
  double static_next = 0;  // the layout of period 0, never re-planned
};

// Every synthetic workload at FocusGpus(config.focus_gpus), CRAFT at the
// focus budget (every method) and EPLB (fresh and stabilised);
// config.drift_periods periods.
absl::StatusOr<std::vector<ReplanRow>> RunReplanDrift(const ScaleConfig& config,
                                                      const std::vector<Workload>& workloads);

// Means over the re-plans of one workload, algorithm, method and limit.
struct ReplanMeans {
  std::string workload;
  std::string algorithm;
  std::string method;
  double limit = 1;
  int gpus = 0;
  int replans = 0;
  double moved_fraction = 0;
  double max_gb_into_gpu = 0;
  double planned = 0;
  double next = 0;
  double static_next = 0;
  // Sum of (method - old) over sum of (fresh - old): the gain kept.
  double kept_planned = 0;
  double kept_next = 0;
};

std::vector<ReplanMeans> SummariseReplans(const std::vector<ReplanRow>& rows);

// "fresh", "stabilised", "incremental 10%", "incremental none".
std::string MethodLabel(const std::string& method, double limit);
// The same as a key for named values: fresh, stabilised, inc10, incnone.
std::string MethodKey(const std::string& method, double limit);

Table ReplanTable(const std::vector<ReplanRow>& rows);
// SummariseReplans as a table.
Table ReplanSummary(const std::vector<ReplanRow>& rows);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_REPLAN_DRIFT_H_
