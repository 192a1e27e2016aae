// Everything one evaluation run produces, and how it is written out: one CSV
// per experiment (the published data), a Markdown table per experiment and
// figure lists for docs/EVALUATION.md, and `values.tsv`, the named numbers the
// document's prose quotes (named_values.h; rendered by render_doc.awk).
#ifndef CRAFT_TOOLS_EVALUATE_REPORT_H_
#define CRAFT_TOOLS_EVALUATE_REPORT_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/evaluate/balance_vs_budget.h"
#include "tools/evaluate/packing_ablation.h"
#include "tools/evaluate/per_layer_allocation.h"
#include "tools/evaluate/planner_speed.h"
#include "tools/evaluate/replan_drift.h"
#include "tools/evaluate/replica_saving.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/throughput_vs_budget.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {

struct Results {
  std::vector<Workload> workloads;
  BalanceResult balance;
  std::vector<SavingRow> saving;
  PerLayerResult per_layer;
  ThroughputResult throughput;
  std::vector<ReplanRow> replan;
  std::vector<SpeedRow> speed;
  std::vector<PackingRow> packing;
};

// Runs every experiment on `workloads` (moved into the result).
absl::StatusOr<Results> RunAll(const ScaleConfig& config, std::vector<Workload> workloads);

// Writes the CSVs, Markdown snippets, figure lists and values.tsv into `dir`
// and prints the summary tables to `echo` unless it is null.
absl::Status WriteReport(const ScaleConfig& config, const Results& results, const std::string& dir,
                         std::ostream* echo);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_REPORT_H_
