#include "tools/evaluate/replan_drift.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/replay.h"
#include "planner/transfer/transfer_plan.h"
#include "tools/evaluate/balance_vs_budget.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;
using planner::Layout;

absl::StatusOr<MoveCost> CostOf(const Layout& previous, const Layout& next,
                                int64_t bytes_per_expert) {
  MoveCost cost;
  CRAFT_ASSIGN_OR_RETURN(cost.moves, planner::CountMoves(previous, next));
  CRAFT_ASSIGN_OR_RETURN(planner::TransferPlan plan,
                         planner::BuildTransferPlan(previous, next, bytes_per_expert));
  cost.bytes_intra_node = plan.bytes_intra_node;
  cost.bytes_inter_node = plan.bytes_inter_node;
  cost.bytes_local = plan.bytes_local;
  cost.max_bytes_into_gpu = plan.max_bytes_received_by_a_gpu;
  return cost;
}

absl::StatusOr<double> BalancednessOn(const Layout& layout, const planner::LoadTrace& period) {
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(layout, period));
  return stats.mean_balancedness;
}

absl::Status RunChain(const ScaleConfig& config, const Workload& workload,
                      const planner::PlanOptions& options, const std::string& label,
                      std::vector<ReplanRow>& rows) {
  const int periods = config.drift_periods;
  const int windows = workload.trace.num_windows();
  std::vector<planner::LoadTrace> traces;
  for (int p = 0; p < periods; ++p) {
    traces.push_back(
        workload.trace.SliceWindows(p * windows / periods, (p + 1) * windows / periods));
  }
  const auto bytes = static_cast<int64_t>(config.bytes_per_expert);
  CRAFT_ASSIGN_OR_RETURN(planner::PlanResult first, planner::Plan(traces[0], options));
  const Layout initial = first.layout;
  Layout raw = initial, stable = initial;
  // The last period has no next one to replay, so it is not re-planned.
  for (int p = 1; p + 1 < periods; ++p) {
    CRAFT_ASSIGN_OR_RETURN(planner::PlanResult fresh, planner::Plan(traces[p], options));
    CRAFT_ASSIGN_OR_RETURN(Layout stabilised, planner::Stabilize(stable, fresh.layout));
    ReplanRow row;
    row.workload = workload.key;
    row.algorithm = label;
    row.gpus = options.cluster.num_gpus;
    row.period = p;
    CRAFT_ASSIGN_OR_RETURN(row.raw, CostOf(raw, fresh.layout, bytes));
    CRAFT_ASSIGN_OR_RETURN(row.stable, CostOf(stable, stabilised, bytes));
    raw = std::move(fresh.layout);
    stable = std::move(stabilised);
    CRAFT_ASSIGN_OR_RETURN(row.next_raw, BalancednessOn(raw, traces[p + 1]));
    CRAFT_ASSIGN_OR_RETURN(row.next_stable, BalancednessOn(stable, traces[p + 1]));
    CRAFT_ASSIGN_OR_RETURN(row.next_static, BalancednessOn(initial, traces[p + 1]));
    rows.push_back(row);
  }
  return absl::OkStatus();
}

double Gb(int64_t bytes) { return static_cast<double>(bytes) / 1e9; }

}  // namespace

absl::StatusOr<std::vector<ReplanRow>> RunReplanDrift(const ScaleConfig& config,
                                                      const std::vector<Workload>& workloads) {
  if (config.drift_periods < 3) {
    return absl::InvalidArgumentError("re-planning needs at least three periods");
  }
  std::vector<ReplanRow> rows;
  for (const Workload& workload : workloads) {
    if (!workload.synthetic || workload.gpu_counts.empty()) continue;
    if (workload.trace.num_windows() < config.drift_periods) {
      return absl::InvalidArgumentError(
          absl::StrCat(workload.key, " has fewer windows than ", config.drift_periods, " periods"));
    }
    const int gpus = FocusGpus(workload, config.focus_gpus);
    planner::PlanOptions craft = OptionsFor(Algorithm::kCraft, gpus);
    craft.budget = config.focus_budget;
    CRAFT_RETURN_IF_ERROR(RunChain(config, workload, craft, kCraft, rows));
    CRAFT_RETURN_IF_ERROR(
        RunChain(config, workload, OptionsFor(Algorithm::kEplb, gpus), kEplb, rows));
    std::cerr << "  re-plan: " << workload.key << " D=" << gpus << "\n";
  }
  return rows;
}

Table ReplanTable(const std::vector<ReplanRow>& rows) {
  Table table({"workload", "algorithm", "gpus", "period", "slots_changed_raw",
               "slots_changed_stable", "remote_loads_raw", "remote_loads_stable",
               "gb_intra_node_raw", "gb_intra_node_stable", "gb_inter_node_raw",
               "gb_inter_node_stable", "max_gb_into_gpu_raw", "max_gb_into_gpu_stable",
               "next_balancedness_raw", "next_balancedness_stable", "next_balancedness_static"});
  for (const ReplanRow& r : rows) {
    table.AddRow({r.workload, r.algorithm, absl::StrCat(r.gpus), absl::StrCat(r.period),
                  absl::StrCat(r.raw.moves.slots_changed),
                  absl::StrCat(r.stable.moves.slots_changed),
                  absl::StrCat(r.raw.moves.remote_loads), absl::StrCat(r.stable.moves.remote_loads),
                  Fixed(Gb(r.raw.bytes_intra_node), 2), Fixed(Gb(r.stable.bytes_intra_node), 2),
                  Fixed(Gb(r.raw.bytes_inter_node), 2), Fixed(Gb(r.stable.bytes_inter_node), 2),
                  Fixed(Gb(r.raw.max_bytes_into_gpu), 2), Fixed(Gb(r.stable.max_bytes_into_gpu), 2),
                  Fixed(r.next_raw, 4), Fixed(r.next_stable, 4), Fixed(r.next_static, 4)});
  }
  return table;
}

std::vector<ReplanMeans> SummariseReplans(const std::vector<ReplanRow>& rows) {
  std::vector<ReplanMeans> means;
  for (const ReplanRow& r : rows) {
    if (means.empty() || means.back().workload != r.workload ||
        means.back().algorithm != r.algorithm) {
      means.push_back({r.workload, r.algorithm, r.gpus});
    }
    ReplanMeans& m = means.back();
    ++m.replans;
    m.slots_raw += r.raw.moves.slots_changed;
    m.slots_stable += r.stable.moves.slots_changed;
    m.gb_raw += Gb(r.raw.bytes_intra_node + r.raw.bytes_inter_node);
    m.gb_stable += Gb(r.stable.bytes_intra_node + r.stable.bytes_inter_node);
    m.gb_stable_cross_node += Gb(r.stable.bytes_inter_node);
    m.max_gb_into_gpu += Gb(r.stable.max_bytes_into_gpu);
    m.next_balancedness += r.next_stable;
    m.static_balancedness += r.next_static;
  }
  for (ReplanMeans& m : means) {
    for (double* sum :
         {&m.slots_raw, &m.slots_stable, &m.gb_raw, &m.gb_stable, &m.gb_stable_cross_node,
          &m.max_gb_into_gpu, &m.next_balancedness, &m.static_balancedness}) {
      *sum /= m.replans;
    }
  }
  return means;
}

Table ReplanSummary(const std::vector<ReplanRow>& rows) {
  Table table({"workload", "algorithm", "D", "re-plans", "slots moved", "stabilised",
               "GB over links", "stabilised GB", "of which cross-node", "max GB into a GPU",
               "bal. next period", "bal. never re-planned"});
  for (const ReplanMeans& m : SummariseReplans(rows)) {
    table.AddRow({m.workload, m.algorithm, absl::StrCat(m.gpus), absl::StrCat(m.replans),
                  Fixed(m.slots_raw, 0), Fixed(m.slots_stable, 0), Fixed(m.gb_raw, 1),
                  Fixed(m.gb_stable, 1), Fixed(m.gb_stable_cross_node, 1),
                  Fixed(m.max_gb_into_gpu, 2), Fixed(m.next_balancedness, 4),
                  Fixed(m.static_balancedness, 4)});
  }
  return table;
}

}  // namespace craft::evaluate
