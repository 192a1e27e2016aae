#include "tools/evaluate/balance_vs_budget.h"

#include <algorithm>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tools/evaluate/measure.h"

namespace craft::evaluate {
namespace {

using planner::Algorithm;

BalancePoint PointFrom(const Workload& workload, const planner::PlanOptions& options,
                       const std::string& label, const Measured& measured) {
  BalancePoint point;
  point.workload = workload.key;
  point.gpus = options.cluster.num_gpus;
  point.algorithm = label;
  point.redundant_slots = measured.plan.layout.TotalRedundantSlots();
  point.budget = options.algorithm == Algorithm::kCraft && options.budget.has_value()
                     ? *options.budget
                     : measured.plan.budget;
  point.plan_balancedness = measured.on_plan.mean_balancedness;
  point.eval_balancedness = measured.on_eval.mean_balancedness;
  point.eval_worst_layer = measured.on_eval.worst_balancedness;
  point.eval_step_time = measured.on_eval.step_time;
  point.replicas_per_layer = measured.plan.replicas_per_layer;
  return point;
}

// The EPLB points of one cell: both policies, with 0 and D redundant slots.
absl::Status AddEplbPoints(const Workload& workload, int gpus, BalanceResult& result) {
  for (EplbPolicy policy : {EplbPolicy::kHierarchical, EplbPolicy::kGlobal}) {
    for (int redundant : {0, gpus}) {
      planner::PlanOptions options = OptionsFor(Algorithm::kEplb, gpus, policy);
      options.redundant_per_layer = redundant;
      CRAFT_ASSIGN_OR_RETURN(
          BalancePoint point,
          MeasurePoint(workload, options,
                       policy == EplbPolicy::kHierarchical ? kEplb : kEplbGlobal));
      result.points.push_back(std::move(point));
    }
  }
  return absl::OkStatus();
}

// The heuristic's point and its objective against the DP; returns its R.
absl::StatusOr<int> AddHeuristicPoint(const Workload& workload, int gpus, BalanceResult& result) {
  const planner::PlanOptions options = OptionsFor(Algorithm::kCraftPaper, gpus);
  CRAFT_ASSIGN_OR_RETURN(Measured measured, PlanAndMeasure(workload, options));
  CRAFT_ASSIGN_OR_RETURN(ObjectiveComparison comparison, CompareWithDp(measured.plan.curves));
  result.objectives.push_back({workload.key, gpus, measured.plan.budget, comparison});
  result.points.push_back(PointFrom(workload, options, kCraftPaper, measured));
  return measured.plan.budget;
}

std::string Cell(const BalancePoint* point) {
  return point == nullptr ? "-" : Fixed(point->eval_balancedness, 3);
}

}  // namespace

absl::StatusOr<BalancePoint> MeasurePoint(const Workload& workload,
                                          const planner::PlanOptions& options,
                                          const std::string& label) {
  CRAFT_ASSIGN_OR_RETURN(Measured measured, PlanAndMeasure(workload, options));
  return PointFrom(workload, options, label, measured);
}

absl::StatusOr<BalancePoint> MeasureCraft(const Workload& workload, int gpus, int budget) {
  planner::PlanOptions options = OptionsFor(Algorithm::kCraft, gpus);
  options.budget = budget;
  return MeasurePoint(workload, options, kCraft);
}

absl::StatusOr<BalanceResult> RunBalanceVsBudget(const ScaleConfig& config,
                                                 const std::vector<Workload>& workloads) {
  BalanceResult result;
  for (const Workload& workload : workloads) {
    for (int gpus : workload.gpu_counts) {
      CRAFT_ASSIGN_OR_RETURN(BalancePoint none,
                             MeasurePoint(workload, OptionsFor(Algorithm::kNone, gpus), kNone));
      result.points.push_back(std::move(none));
      CRAFT_RETURN_IF_ERROR(AddEplbPoints(workload, gpus, result));
      CRAFT_ASSIGN_OR_RETURN(int heuristic_budget, AddHeuristicPoint(workload, gpus, result));
      std::set<int> budgets(config.budgets.begin(), config.budgets.end());
      budgets.insert(workload.num_layers());
      budgets.insert(heuristic_budget);
      for (int budget : budgets) {
        CRAFT_ASSIGN_OR_RETURN(BalancePoint point, MeasureCraft(workload, gpus, budget));
        result.points.push_back(std::move(point));
      }
      std::cerr << "  balance: " << workload.key << " D=" << gpus << "\n";
    }
  }
  return result;
}

const BalancePoint* FindPoint(const BalanceResult& result, const std::string& workload, int gpus,
                              const std::string& algorithm, int budget) {
  for (const BalancePoint& point : result.points) {
    if (point.workload == workload && point.gpus == gpus && point.algorithm == algorithm &&
        (budget < 0 || point.budget == budget)) {
      return &point;
    }
  }
  return nullptr;
}

Table BalanceTable(const BalanceResult& result) {
  Table table({"workload", "gpus", "algorithm", "budget", "redundant_slots", "replicas_per_gpu",
               "plan_balancedness", "eval_balancedness", "eval_worst_layer", "eval_step_time"});
  for (const BalancePoint& p : result.points) {
    table.AddRow({p.workload, absl::StrCat(p.gpus), p.algorithm, absl::StrCat(p.budget),
                  absl::StrCat(p.redundant_slots),
                  Fixed(static_cast<double>(p.redundant_slots) / p.gpus, 3),
                  Fixed(p.plan_balancedness, 4), Fixed(p.eval_balancedness, 4),
                  Fixed(p.eval_worst_layer, 4), Fixed(p.eval_step_time, 0)});
  }
  return table;
}

Table BalanceSummary(const BalanceResult& result) {
  Table table({"workload", "D", "placement only", "EPLB R=L", "EPLB global R=L", "CRAFT R=1", "R=2",
               "R=4", "R=8", "R=16", "R=32", "CRAFT R=L", "heuristic (its R)"});
  std::set<std::pair<std::string, int>> seen;
  for (const BalancePoint& p : result.points) {
    if (!seen.insert({p.workload, p.gpus}).second) continue;
    const int layers = static_cast<int>(p.replicas_per_layer.size());
    auto at = [&](const char* algorithm, int budget) {
      return Cell(FindPoint(result, p.workload, p.gpus, algorithm, budget));
    };
    const BalancePoint* paper = FindPoint(result, p.workload, p.gpus, kCraftPaper);
    table.AddRow({p.workload, absl::StrCat(p.gpus), at(kNone, -1), at(kEplb, layers),
                  at(kEplbGlobal, layers), at(kCraft, 1), at(kCraft, 2), at(kCraft, 4),
                  at(kCraft, 8), at(kCraft, 16), at(kCraft, 32), at(kCraft, layers),
                  paper == nullptr ? "-" : absl::StrCat(Cell(paper), " (", paper->budget, ")")});
  }
  return table;
}

Table ObjectiveTable(const BalanceResult& result) {
  Table table({"workload", "D", "heuristic R", "heuristic slots", "heuristic gain",
               "DP gain (same slots)", "heuristic bal", "DP bal (same R)"});
  for (const HeuristicObjective& o : result.objectives) {
    const BalancePoint* paper = FindPoint(result, o.workload, o.gpus, kCraftPaper);
    const BalancePoint* dp = FindPoint(result, o.workload, o.gpus, kCraft, o.budget);
    table.AddRow({o.workload, absl::StrCat(o.gpus), absl::StrCat(o.budget),
                  absl::StrCat(o.comparison.slots), Fixed(o.comparison.heuristic_gain, 3),
                  Fixed(o.comparison.dp_gain, 3), Cell(paper), Cell(dp)});
  }
  return table;
}

}  // namespace craft::evaluate
