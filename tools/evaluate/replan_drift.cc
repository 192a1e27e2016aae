#include "tools/evaluate/replan_drift.h"

#include <cmath>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/replay.h"
#include "planner/transfer/incremental.h"
#include "planner/transfer/movement.h"
#include "planner/transfer/stabilize.h"
#include "tools/evaluate/balance_vs_budget.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;
using planner::Layout;

absl::StatusOr<double> BalancednessOn(const Layout& layout, const planner::LoadTrace& period) {
  CRAFT_ASSIGN_OR_RETURN(planner::LayoutStats stats, planner::EvaluateLayout(layout, period));
  return stats.mean_balancedness;
}

// One re-planning method and the layout it has committed.
struct Chain {
  std::string method;
  double limit = 1;
  Layout committed;
};

absl::StatusOr<Layout> Replan(const Chain& chain, const Layout& fresh,
                              const planner::LoadTrace& period, const ScaleConfig& config) {
  if (chain.method == kFresh) return fresh;
  if (chain.method == kStabilised) return planner::Stabilize(chain.committed, fresh);
  planner::IncrementalOptions options;
  options.budget = config.focus_budget;
  options.bytes_per_expert = static_cast<int64_t>(config.bytes_per_expert);
  options.limit.max_moved_fraction = chain.limit;
  CRAFT_ASSIGN_OR_RETURN(planner::IncrementalPlan plan,
                         planner::PlanIncremental(chain.committed, period, options));
  return planner::LayoutAtPoint(chain.committed, plan,
                                planner::PickFrontierPoint(plan, options.limit));
}

absl::Status RunChains(const ScaleConfig& config, const Workload& workload,
                       const planner::PlanOptions& options, const std::string& label,
                       bool incremental, std::vector<ReplanRow>& rows) {
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
  std::vector<Chain> chains = {{kFresh, 1, initial}, {kStabilised, 1, initial}};
  if (incremental) {
    for (double limit : IncrementalLimits()) chains.push_back({kIncremental, limit, initial});
  }
  // The last period has no next one to replay, so it is not re-planned.
  for (int p = 1; p + 1 < periods; ++p) {
    CRAFT_ASSIGN_OR_RETURN(planner::PlanResult fresh, planner::Plan(traces[p], options));
    CRAFT_ASSIGN_OR_RETURN(const double fresh_planned, BalancednessOn(fresh.layout, traces[p]));
    CRAFT_ASSIGN_OR_RETURN(const double fresh_next, BalancednessOn(fresh.layout, traces[p + 1]));
    CRAFT_ASSIGN_OR_RETURN(const double static_next, BalancednessOn(initial, traces[p + 1]));
    for (Chain& chain : chains) {
      CRAFT_ASSIGN_OR_RETURN(Layout next, Replan(chain, fresh.layout, traces[p], config));
      CRAFT_ASSIGN_OR_RETURN(planner::Movement moved,
                             planner::CountMovement(chain.committed, next, bytes));
      ReplanRow row;
      row.workload = workload.key;
      row.algorithm = label;
      row.method = chain.method;
      row.limit = chain.limit;
      row.gpus = options.cluster.num_gpus;
      row.period = p;
      row.moved_replicas = moved.moved_replicas;
      row.moved_fraction = moved.moved_fraction;
      row.max_bytes_into_gpu = moved.max_bytes_into_gpu;
      CRAFT_ASSIGN_OR_RETURN(row.planned, BalancednessOn(next, traces[p]));
      CRAFT_ASSIGN_OR_RETURN(row.next, BalancednessOn(next, traces[p + 1]));
      CRAFT_ASSIGN_OR_RETURN(row.old_planned, BalancednessOn(chain.committed, traces[p]));
      CRAFT_ASSIGN_OR_RETURN(row.old_next, BalancednessOn(chain.committed, traces[p + 1]));
      row.fresh_planned = fresh_planned;
      row.fresh_next = fresh_next;
      row.static_next = static_next;
      rows.push_back(row);
      chain.committed = std::move(next);
    }
  }
  return absl::OkStatus();
}

double Gb(int64_t bytes) { return static_cast<double>(bytes) / 1e9; }

// (sum of method - old) / (sum of fresh - old), or 1 when fresh gains nothing.
double Kept(double method_gain, double fresh_gain) {
  return fresh_gain > 0 ? method_gain / fresh_gain : 1.0;
}

}  // namespace

std::vector<double> IncrementalLimits() { return {0.05, 0.10, 0.15, 0.25, 1.0}; }

std::string MethodLabel(const std::string& method, double limit) {
  if (method != kIncremental) return method;
  if (limit >= 1) return absl::StrCat(method, " none");
  return absl::StrCat(method, " ", std::lround(100 * limit), "%");
}

std::string MethodKey(const std::string& method, double limit) {
  if (method != kIncremental) return method;
  return limit >= 1 ? "incnone" : absl::StrCat("inc", std::lround(100 * limit));
}

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
    CRAFT_RETURN_IF_ERROR(RunChains(config, workload, craft, kCraft, true, rows));
    CRAFT_RETURN_IF_ERROR(
        RunChains(config, workload, OptionsFor(Algorithm::kEplb, gpus), kEplb, false, rows));
    std::cerr << "  re-plan: " << workload.key << " D=" << gpus << "\n";
  }
  return rows;
}

Table ReplanTable(const std::vector<ReplanRow>& rows) {
  Table table({"workload", "algorithm", "method", "limit", "gpus", "period", "moved_replicas",
               "moved_fraction", "max_gb_into_gpu", "balancedness_planned", "balancedness_next",
               "old_planned", "old_next", "fresh_planned", "fresh_next", "static_next"});
  for (const ReplanRow& r : rows) {
    table.AddRow({r.workload, r.algorithm, r.method, Fixed(r.limit, 2), absl::StrCat(r.gpus),
                  absl::StrCat(r.period), absl::StrCat(r.moved_replicas),
                  Fixed(r.moved_fraction, 4), Fixed(Gb(r.max_bytes_into_gpu), 2),
                  Fixed(r.planned, 4), Fixed(r.next, 4), Fixed(r.old_planned, 4),
                  Fixed(r.old_next, 4), Fixed(r.fresh_planned, 4), Fixed(r.fresh_next, 4),
                  Fixed(r.static_next, 4)});
  }
  return table;
}

std::vector<ReplanMeans> SummariseReplans(const std::vector<ReplanRow>& rows) {
  std::vector<ReplanMeans> means;
  std::vector<std::pair<double, double>> gains_planned, gains_next;  // (method, fresh)
  for (const ReplanRow& r : rows) {
    size_t i = 0;
    while (i < means.size() &&
           !(means[i].workload == r.workload && means[i].algorithm == r.algorithm &&
             means[i].method == r.method && means[i].limit == r.limit)) {
      ++i;
    }
    if (i == means.size()) {
      ReplanMeans m;
      m.workload = r.workload;
      m.algorithm = r.algorithm;
      m.method = r.method;
      m.limit = r.limit;
      m.gpus = r.gpus;
      means.push_back(m);
      gains_planned.push_back({0, 0});
      gains_next.push_back({0, 0});
    }
    ReplanMeans& m = means[i];
    ++m.replans;
    m.moved_fraction += r.moved_fraction;
    m.max_gb_into_gpu += Gb(r.max_bytes_into_gpu);
    m.planned += r.planned;
    m.next += r.next;
    m.static_next += r.static_next;
    gains_planned[i].first += r.planned - r.old_planned;
    gains_planned[i].second += r.fresh_planned - r.old_planned;
    gains_next[i].first += r.next - r.old_next;
    gains_next[i].second += r.fresh_next - r.old_next;
  }
  for (size_t i = 0; i < means.size(); ++i) {
    ReplanMeans& m = means[i];
    for (double* sum :
         {&m.moved_fraction, &m.max_gb_into_gpu, &m.planned, &m.next, &m.static_next}) {
      *sum /= m.replans;
    }
    m.kept_planned = Kept(gains_planned[i].first, gains_planned[i].second);
    m.kept_next = Kept(gains_next[i].first, gains_next[i].second);
  }
  return means;
}

Table ReplanSummary(const std::vector<ReplanRow>& rows) {
  Table table({"workload", "algorithm", "method", "limit", "D", "re-plans", "moved %",
               "max GB into a GPU", "bal. planned", "bal. next period", "gain kept (planned)",
               "gain kept (next)", "bal. never re-planned"});
  for (const ReplanMeans& m : SummariseReplans(rows)) {
    table.AddRow({m.workload, m.algorithm, MethodLabel(m.method, m.limit), Fixed(m.limit, 2),
                  absl::StrCat(m.gpus), absl::StrCat(m.replans), Fixed(100 * m.moved_fraction, 1),
                  Fixed(m.max_gb_into_gpu, 2), Fixed(m.planned, 4), Fixed(m.next, 4),
                  absl::StrCat(Fixed(100 * m.kept_planned, 0), "%"),
                  absl::StrCat(Fixed(100 * m.kept_next, 0), "%"), Fixed(m.static_next, 4)});
  }
  return table;
}

}  // namespace craft::evaluate
