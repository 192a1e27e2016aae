#include "planner/craft/craft_planner.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/benefit.h"
#include "planner/craft/knapsack.h"
#include "planner/craft/rounding.h"
#include "planner/craft/slot_assignment.h"
#include "planner/parallel.h"

namespace craft::planner {
namespace {

// The knapsack groups: one per layer, one option per candidate count.
std::vector<std::vector<KnapsackOption>> KnapsackGroups(const std::vector<BenefitCurve>& curves,
                                                        CraftObjective objective) {
  std::vector<std::vector<KnapsackOption>> groups;
  for (const BenefitCurve& curve : curves) {
    std::vector<KnapsackOption> options;
    for (size_t k = 0; k < curve.replicas.size(); ++k) {
      double value = 0;
      switch (objective) {
        case CraftObjective::kBalancedness:
          value = curve.balancedness[k] - curve.balancedness[0];
          break;
        case CraftObjective::kStepTime:
          value = -curve.max_gpu_load[k];
          break;
        case CraftObjective::kRoofline:
          value = -curve.modelled_us[k];
          break;
      }
      options.push_back({curve.replicas[k], value});
    }
    groups.push_back(std::move(options));
  }
  return groups;
}

std::vector<int> ChosenReplicas(const std::vector<BenefitCurve>& curves,
                                const KnapsackChoice& choice) {
  std::vector<int> replicas;
  for (size_t l = 0; l < curves.size(); ++l) {
    replicas.push_back(curves[l].replicas[choice.option_per_group[l]]);
  }
  return replicas;
}

int MaxCurveReplicas(const std::vector<BenefitCurve>& curves) {
  int total = 0;
  for (const BenefitCurve& curve : curves) total += curve.replicas.back();
  return total;
}

BudgetPoint Predict(const std::vector<BenefitCurve>& curves, const KnapsackChoice& choice,
                    int budget, int64_t base_slots, const PlanOptions& options) {
  BudgetPoint point;
  point.budget = budget;
  point.redundant_slots = choice.total_weight;
  for (size_t l = 0; l < curves.size(); ++l) {
    const int k = choice.option_per_group[l];
    point.predicted_balancedness += curves[l].balancedness[k] / curves.size();
    point.predicted_step_time += curves[l].max_gpu_load[k];
    if (!curves[l].modelled_us.empty()) point.predicted_step_ms += curves[l].modelled_us[k] / 1000;
  }
  const double experts_per_gpu =
      std::ceil(static_cast<double>(base_slots + choice.total_weight) / options.cluster.num_gpus);
  const MemoryModel& memory = options.memory;
  const double kv_bytes =
      memory.hbm_bytes - memory.non_expert_bytes - experts_per_gpu * memory.bytes_per_expert;
  point.kv_tokens_per_gpu = std::max(0.0, kv_bytes / memory.kv_bytes_per_token);
  return point;
}

absl::Status ValidateMemory(const MemoryModel& memory) {
  if (!(memory.hbm_bytes > 0) || !(memory.non_expert_bytes >= 0) ||
      !(memory.bytes_per_expert > 0) || !(memory.kv_bytes_per_token > 0)) {
    return absl::InvalidArgumentError(
        "memory model needs hbm, bytes per expert and KV bytes per token > 0 and non-expert "
        "bytes >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

int64_t RedundantCapacity(int budget, int num_gpus, int residue) {
  return static_cast<int64_t>(budget) * num_gpus + residue;
}

int EqualMemoryResidue(int num_layers, int num_experts, int num_gpus) {
  const int64_t base = static_cast<int64_t>(num_layers) * num_experts;
  return static_cast<int>((num_gpus - base % num_gpus) % num_gpus);
}

absl::StatusOr<Layout> BuildLayout(const LoadTrace& trace, const ClusterShape& cluster,
                                   const std::vector<int>& replicas_per_layer,
                                   const PackingOptions& options, int threads) {
  if (static_cast<int>(replicas_per_layer.size()) != trace.num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat(
        replicas_per_layer.size(), " replica counts for ", trace.num_layers(), " layers"));
  }
  std::vector<int> slots_per_layer;
  for (int r : replicas_per_layer) slots_per_layer.push_back(trace.num_experts() + r);
  CRAFT_ASSIGN_OR_RETURN(auto slots, AssignSlots(slots_per_layer, cluster));
  Layout layout;
  layout.num_experts = trace.num_experts();
  layout.cluster = cluster;
  layout.layers.resize(trace.num_layers());
  CRAFT_RETURN_IF_ERROR(ParallelFor(trace.num_layers(), threads, [&](int l) -> absl::Status {
    CRAFT_ASSIGN_OR_RETURN(layout.layers[l], PlaceLayer(trace.aggregate(l), replicas_per_layer[l],
                                                        slots[l], cluster, options));
    return absl::OkStatus();
  }));
  return layout;
}

namespace {

// The largest budget auto-R sweeps: every layer at its largest candidate.
int MaxSweepBudget(const std::vector<BenefitCurve>& curves, int num_gpus) {
  return (MaxCurveReplicas(curves) + num_gpus - 1) / num_gpus;
}

// SweepBudgets on a knapsack solved up to the largest budget's capacity.
absl::StatusOr<std::vector<BudgetPoint>> SweepSolvedBudgets(const std::vector<BenefitCurve>& curves,
                                                            const MultipleChoiceKnapsack& knapsack,
                                                            const LoadTrace& trace,
                                                            const PlanOptions& options) {
  CRAFT_RETURN_IF_ERROR(ValidateMemory(options.memory));
  const int num_gpus = options.cluster.num_gpus;
  const int64_t base_slots = static_cast<int64_t>(trace.num_layers()) * trace.num_experts();
  const int residue = EqualMemoryResidue(trace.num_layers(), trace.num_experts(), num_gpus);
  const int max_budget = MaxSweepBudget(curves, num_gpus);
  std::vector<BudgetPoint> sweep;
  for (int budget = 0; budget <= max_budget; ++budget) {
    auto choice = knapsack.Best(RedundantCapacity(budget, num_gpus, residue), num_gpus, residue);
    if (!choice.ok()) continue;  // no plan of exactly equal memory at this R
    BudgetPoint point = Predict(curves, *choice, budget, base_slots, options);
    if (point.kv_tokens_per_gpu <= 0) break;  // replicas no longer fit in memory
    sweep.push_back(point);
  }
  if (sweep.empty()) {
    return absl::InvalidArgumentError(
        "no budget leaves room for a KV cache: the expert weights alone exceed the memory model");
  }
  // Under the roofline objective a step lasts modelled milliseconds, so a
  // replica's weight read counts against it; otherwise tokens stand for time.
  const auto step = [&](const BudgetPoint& point) {
    return options.objective == CraftObjective::kRoofline ? point.predicted_step_ms
                                                          : point.predicted_step_time;
  };
  for (BudgetPoint& point : sweep) {
    point.relative_throughput =
        (point.kv_tokens_per_gpu / step(point)) / (sweep[0].kv_tokens_per_gpu / step(sweep[0]));
  }
  return sweep;
}

}  // namespace

absl::StatusOr<std::vector<BudgetPoint>> SweepBudgets(const std::vector<BenefitCurve>& curves,
                                                      const LoadTrace& trace,
                                                      const PlanOptions& options) {
  const int num_gpus = options.cluster.num_gpus;
  const int residue = EqualMemoryResidue(trace.num_layers(), trace.num_experts(), num_gpus);
  CRAFT_ASSIGN_OR_RETURN(
      auto knapsack, MultipleChoiceKnapsack::Solve(
                         KnapsackGroups(curves, options.objective),
                         RedundantCapacity(MaxSweepBudget(curves, num_gpus), num_gpus, residue)));
  return SweepSolvedBudgets(curves, knapsack, trace, options);
}

absl::StatusOr<PlanResult> PlanCraft(const LoadTrace& trace, const PlanOptions& options) {
  const int num_gpus = options.cluster.num_gpus;
  const std::vector<int> candidates =
      options.candidates.empty() ? DefaultCandidates(num_gpus) : options.candidates;
  const PackingOptions packing{options.forbid_duplicates};
  PlanResult result;
  const RooflineModel* roofline =
      options.objective == CraftObjective::kRoofline ? &options.roofline.value() : nullptr;
  CRAFT_ASSIGN_OR_RETURN(result.curves, ComputeBenefitCurves(trace, options.cluster, candidates,
                                                             packing, options.threads, roofline));
  const int residue = EqualMemoryResidue(trace.num_layers(), trace.num_experts(), num_gpus);
  const auto groups = KnapsackGroups(result.curves, options.objective);
  // One knapsack table answers every capacity up to the one it was solved for:
  // auto-R solves once for its whole sweep and picks its plan from the same table.
  std::optional<MultipleChoiceKnapsack> knapsack;
  if (options.budget.has_value()) {
    if (*options.budget < 0) {
      return absl::InvalidArgumentError(absl::StrCat("budget must be >= 0, got ", *options.budget));
    }
    result.budget = *options.budget;
  } else {
    CRAFT_ASSIGN_OR_RETURN(
        knapsack,
        MultipleChoiceKnapsack::Solve(
            groups, RedundantCapacity(MaxSweepBudget(result.curves, num_gpus), num_gpus, residue)));
    CRAFT_ASSIGN_OR_RETURN(result.budget_sweep,
                           SweepSolvedBudgets(result.curves, *knapsack, trace, options));
    const auto best = std::max_element(result.budget_sweep.begin(), result.budget_sweep.end(),
                                       [](const BudgetPoint& a, const BudgetPoint& b) {
                                         return a.relative_throughput < b.relative_throughput;
                                       });
    result.budget = best->budget;
  }
  const int capacity = static_cast<int>(std::min<int64_t>(
      RedundantCapacity(result.budget, num_gpus, residue), MaxCurveReplicas(result.curves)));
  if (!knapsack.has_value()) {
    CRAFT_ASSIGN_OR_RETURN(knapsack, MultipleChoiceKnapsack::Solve(groups, capacity));
  }
  auto choice = knapsack->Best(capacity, num_gpus, residue);
  if (choice.ok()) {
    result.replicas_per_layer = ChosenReplicas(result.curves, *choice);
  } else {
    // No mix of candidate counts evens out memory exactly (an uneven L x E
    // with coarse candidates). Plan within D - 1 fewer slots, then pad the
    // total up to the next equal-memory total the way the paper's artifact
    // rounds, which stays within the capacity.
    CRAFT_ASSIGN_OR_RETURN(KnapsackChoice unconstrained,
                           knapsack->Best(std::max(0, capacity - (num_gpus - 1))));
    result.replicas_per_layer =
        RoundFinalAlloc(ChosenReplicas(result.curves, unconstrained), num_gpus,
                        static_cast<int64_t>(trace.num_layers()) * trace.num_experts());
  }
  CRAFT_ASSIGN_OR_RETURN(
      result.layout,
      BuildLayout(trace, options.cluster, result.replicas_per_layer, packing, options.threads));
  return result;
}

}  // namespace craft::planner
