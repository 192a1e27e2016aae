#include "tools/evaluate/planner_speed.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/benefit.h"
#include "planner/craft/craft_planner.h"
#include "planner/replay.h"
#include "planner/transfer/stabilize.h"
#include "planner/transfer/transfer_plan.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;

// `windows` windows cycling through `source`'s.
planner::LoadTrace Tiled(const planner::LoadTrace& source, int windows) {
  planner::LoadTrace trace(source.num_layers(), source.num_experts(), windows);
  for (int b = 0; b < windows; ++b) {
    for (int l = 0; l < source.num_layers(); ++l) {
      const auto from = source.window(b % source.num_windows(), l);
      std::copy(from.begin(), from.end(), trace.mutable_window(b, l).begin());
    }
  }
  trace.SetAggregateFromWindows();
  return trace;
}

// The fastest of `repeats` runs of `stage`, in milliseconds: the planner is
// CPU-bound and deterministic, so slower runs only measure other load on the
// machine.
absl::StatusOr<double> BestMs(int repeats, const std::function<absl::Status()>& stage) {
  std::vector<double> times;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto start = std::chrono::steady_clock::now();
    CRAFT_RETURN_IF_ERROR(stage());
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    times.push_back(elapsed.count());
  }
  return *std::min_element(times.begin(), times.end());
}

absl::Status TimeShape(const ScaleConfig& config, const Workload& workload,
                       std::vector<SpeedRow>& rows) {
  const int gpus = FocusGpus(workload, config.focus_gpus);
  const planner::LoadTrace trace = Tiled(workload.trace, config.speed_windows);
  const planner::ClusterShape cluster = ClusterFor(gpus);
  planner::PlanOptions craft = OptionsFor(Algorithm::kCraft, gpus);
  craft.budget = config.focus_budget;
  planner::PlanOptions automatic = OptionsFor(Algorithm::kCraft, gpus);
  automatic.memory = MemoryFor(config, config.gpus.front(), workload.non_expert_bytes);

  // Inputs of the later stages, computed once outside the timings.
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult planned, planner::Plan(trace, craft));
  const int half = trace.num_windows() / 2;
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult before,
                         planner::Plan(trace.SliceWindows(0, half), craft));
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult after,
                         planner::Plan(trace.SliceWindows(half, trace.num_windows()), craft));
  CRAFT_ASSIGN_OR_RETURN(planner::Layout stabilised,
                         planner::Stabilize(before.layout, after.layout));
  const auto bytes = static_cast<int64_t>(config.bytes_per_expert);

  struct Stage {
    const char* key;
    const char* name;
    std::function<absl::Status()> run;
  };
  const Stage stages[] = {
      {"curves", "benefit curves (all candidates)",
       [&] {
         return planner::ComputeBenefitCurves(trace, cluster, planner::DefaultCandidates(gpus), {})
             .status();
       }},
      {"knapsack", "knapsack (every R) + auto-R",
       [&] { return planner::SweepBudgets(planned.curves, trace, automatic).status(); }},
      {"layout", "slots + packing",
       [&] {
         return planner::BuildLayout(trace, cluster, planned.replicas_per_layer, {}).status();
       }},
      {"craft", "CRAFT plan (R fixed)", [&] { return planner::Plan(trace, craft).status(); }},
      {"craft_auto", "CRAFT plan (auto-R)",
       [&] { return planner::Plan(trace, automatic).status(); }},
      {"paper", "paper heuristic plan",
       [&] { return planner::Plan(trace, OptionsFor(Algorithm::kCraftPaper, gpus)).status(); }},
      {"eplb", "DeepSeek EPLB (r = D)",
       [&] { return planner::Plan(trace, OptionsFor(Algorithm::kEplb, gpus)).status(); }},
      {"stabilize", "stabilise a re-plan",
       [&] { return planner::Stabilize(before.layout, after.layout).status(); }},
      {"transfer", "transfer plan",
       [&] { return planner::BuildTransferPlan(before.layout, stabilised, bytes).status(); }},
      {"replay", "replay every window",
       [&] { return planner::EvaluateLayout(planned.layout, trace).status(); }},
  };
  for (const Stage& stage : stages) {
    CRAFT_ASSIGN_OR_RETURN(double ms, BestMs(config.speed_repeats, stage.run));
    rows.push_back({workload.model, trace.num_layers(), trace.num_experts(), gpus,
                    trace.num_windows(), stage.key, stage.name, ms});
  }
  std::cerr << "  speed: " << workload.model << " D=" << gpus << "\n";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SpeedRow>> RunPlannerSpeed(const ScaleConfig& config,
                                                      const std::vector<Workload>& workloads) {
  std::vector<SpeedRow> rows;
  std::vector<std::string> timed;
  for (const Workload& workload : workloads) {
    if (!workload.synthetic || workload.gpu_counts.empty() ||
        std::find(timed.begin(), timed.end(), workload.model) != timed.end()) {
      continue;
    }
    timed.push_back(workload.model);
    CRAFT_RETURN_IF_ERROR(TimeShape(config, workload, rows));
  }
  return rows;
}

Table SpeedTable(const std::vector<SpeedRow>& rows) {
  Table table({"model", "layers", "experts", "gpus", "windows", "key", "stage", "milliseconds"});
  for (const SpeedRow& r : rows) {
    table.AddRow({r.model, absl::StrCat(r.layers), absl::StrCat(r.experts), absl::StrCat(r.gpus),
                  absl::StrCat(r.windows), r.key, r.stage, Fixed(r.milliseconds, 1)});
  }
  return table;
}

Table SpeedSummary(const std::vector<SpeedRow>& rows) {
  std::vector<std::string> models, stages;
  std::map<std::pair<std::string, std::string>, double> ms;
  std::map<std::string, std::string> headers;
  for (const SpeedRow& r : rows) {
    if (std::find(models.begin(), models.end(), r.model) == models.end()) {
      models.push_back(r.model);
      headers[r.model] = absl::StrCat(r.model, " ", r.layers, "x", r.experts, " D=", r.gpus, " ",
                                      r.windows, " windows (ms)");
    }
    if (std::find(stages.begin(), stages.end(), r.stage) == stages.end()) {
      stages.push_back(r.stage);
    }
    ms[{r.stage, r.model}] = r.milliseconds;
  }
  std::vector<std::string> columns = {"stage"};
  for (const std::string& model : models) columns.push_back(headers[model]);
  Table table(columns);
  for (const std::string& stage : stages) {
    std::vector<std::string> cells = {stage};
    for (const std::string& model : models) cells.push_back(Fixed(ms[{stage, model}], 1));
    table.AddRow(cells);
  }
  return table;
}

}  // namespace craft::evaluate
