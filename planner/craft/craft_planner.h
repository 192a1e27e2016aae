// The CRAFT planner: per-layer replica counts chosen by an exact knapsack
// over benefit curves, then capacity-aware slots and packing.
#ifndef CRAFT_PLANNER_CRAFT_CRAFT_PLANNER_H_
#define CRAFT_PLANNER_CRAFT_CRAFT_PLANNER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "planner/craft/packing.h"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/plan_types.h"

namespace craft::planner {

// Places every layer l with `replicas_per_layer[l]` redundant slots: slot
// counts per GPU by AssignSlots (equal per-GPU totals), then replication and
// packing from the trace's aggregate. Also used for placement-only (all 0).
// Layers are packed on `threads` threads (0: every core).
absl::StatusOr<Layout> BuildLayout(const LoadTrace& trace, const ClusterShape& cluster,
                                   const std::vector<int>& replicas_per_layer,
                                   const PackingOptions& options, int threads = 1);

// Redundant-slot totals c for which L x E + c divides evenly over the GPUs
// satisfy c % D == this residue.
int EqualMemoryResidue(int num_layers, int num_experts, int num_gpus);

// Redundant slots a budget of R per GPU allows: every GPU holds at most
// ceil(L x E / D) + R slots, so the `residue` slots that even out an uneven
// L x E come free (placement alone already needs them on some GPUs).
int64_t RedundantCapacity(int budget, int num_gpus, int residue);

// CRAFT with the DP: benefit curves for options.candidates, then the
// multiple-choice knapsack under options.budget x D redundant slots (or auto-R
// when the budget is unset), then BuildLayout.
absl::StatusOr<PlanResult> PlanCraft(const LoadTrace& trace, const PlanOptions& options);

// Auto-R: for every budget R the memory allows, the DP's plan, its modelled
// step time (sum of busiest-GPU loads from the curves) and the KV cache left
// per GPU; throughput is modelled as KV tokens / step time (concurrency is KV
// bound, a step waits for its slowest GPU). Returns the sweep, best first is
// NOT implied: the caller picks the maximum.
absl::StatusOr<std::vector<BudgetPoint>> SweepBudgets(const std::vector<BenefitCurve>& curves,
                                                      const LoadTrace& trace,
                                                      const PlanOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_CRAFT_PLANNER_H_
