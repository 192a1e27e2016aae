#include "tools/evaluate/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "tools/evaluate/named_values.h"

namespace craft::evaluate {
namespace {

// One experiment's outputs: NAME.csv (every row) and NAME.md (the summary).
absl::Status WriteExperiment(const std::string& dir, const std::string& name, const Table& data,
                             const Table& summary, std::ostream* echo) {
  CRAFT_RETURN_IF_ERROR(WriteText(dir, name + ".csv", data.ToCsv()));
  CRAFT_RETURN_IF_ERROR(WriteText(dir, name + ".md", summary.ToMarkdown()));
  if (echo != nullptr) *echo << "\n== " << name << "\n" << summary.ToText();
  return absl::OkStatus();
}

// Markdown image links, one per workload: PREFIX_WORKLOAD.png.
std::string FigureList(const std::vector<std::string>& workloads, const std::string& prefix,
                       const std::string& caption) {
  std::string out;
  for (const std::string& workload : workloads) {
    out += absl::StrCat("![", caption, ": ", workload, "](evaluation/", prefix, "_", workload,
                        ".png)\n\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<Results> RunAll(const ScaleConfig& config, std::vector<Workload> workloads) {
  Results results;
  results.workloads = std::move(workloads);
  const auto& w = results.workloads;
  CRAFT_ASSIGN_OR_RETURN(results.balance, RunBalanceVsBudget(config, w));
  CRAFT_ASSIGN_OR_RETURN(results.saving, RunReplicaSaving(w, results.balance));
  CRAFT_ASSIGN_OR_RETURN(results.per_layer, RunPerLayerAllocation(config, w));
  CRAFT_ASSIGN_OR_RETURN(results.throughput, RunThroughputVsBudget(config, w));
  CRAFT_ASSIGN_OR_RETURN(results.replan, RunReplanDrift(config, w));
  CRAFT_ASSIGN_OR_RETURN(results.packing, RunPackingAblation(config, w));
  CRAFT_ASSIGN_OR_RETURN(results.speed, RunPlannerSpeed(config, w));
  return results;
}

absl::Status WriteReport(const ScaleConfig& config, const Results& results, const std::string& dir,
                         std::ostream* echo) {
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "balance_vs_budget", BalanceTable(results.balance),
                                        BalanceSummary(results.balance), echo));
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "heuristic_vs_dp.md", ObjectiveTable(results.balance).ToMarkdown()));
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "replica_saving", SavingTable(results.saving),
                                        SavingSummary(results.saving), echo));
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "per_layer_allocation", LayerTable(results.per_layer),
                                        LayerSummary(results.per_layer), echo));
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "benefit_curves.csv", CurveTable(results.per_layer).ToCsv()));
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "throughput_vs_budget",
                                        ThroughputTable(results.throughput),
                                        ThroughputSummary(results.throughput), echo));
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "throughput_sweep.csv", SweepTable(results.throughput).ToCsv()));
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "replan_drift", ReplanTable(results.replan),
                                        ReplanSummary(results.replan), echo));
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "replan_drift_summary.csv", ReplanSummary(results.replan).ToCsv()));
  const Table packing = PackingTable(results.packing);
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "packing_ablation", packing, packing, echo));
  CRAFT_RETURN_IF_ERROR(WriteExperiment(dir, "planner_speed", SpeedTable(results.speed),
                                        SpeedSummary(results.speed), echo));

  std::vector<std::string> all;
  for (const Workload& workload : results.workloads) {
    if (workload.gpu_counts.empty()) continue;
    all.push_back(workload.key);
  }
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "figures_balance.md", FigureList(all, "balance", "balancedness vs R")));
  CRAFT_RETURN_IF_ERROR(
      WriteText(dir, "figures_per_layer.md", FigureList(all, "per_layer", "replicas per layer")));
  std::string values;
  for (const auto& [key, value] : NamedValues(config, results)) {
    absl::StrAppend(&values, key, "\t", value, "\n");
  }
  return WriteText(dir, "values.tsv", values);
}

}  // namespace craft::evaluate
