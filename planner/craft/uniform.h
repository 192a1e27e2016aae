// Uniform CRAFT: craft's replication, packing, stabilisation and incremental
// moves for engines that need the same slots on every GPU in every layer
// (SGLang and vLLM today; docs/design.md §7).
//
// Every layer gets EPLB's slot count, E + r with r = PlanOptions's
// redundant_per_layer (default D), so the knapsack has nothing to choose. What
// craft still decides is which experts get the r replicas and where they go.
// Per layer the result is whichever of craft's placement and DeepSeek EPLB's
// on the same slots replays better on the trace, so it is never worse than
// EPLB there (EPLB's layer is skipped only when it breaks --no-duplicates).
#ifndef CRAFT_PLANNER_CRAFT_UNIFORM_H_
#define CRAFT_PLANNER_CRAFT_UNIFORM_H_

#include "absl/status/statusor.h"
#include "planner/load_trace.h"
#include "planner/plan_types.h"

namespace craft::planner {

// The redundant slots per layer a uniform plan of `num_experts` experts uses:
// options.redundant_per_layer or D. INVALID_ARGUMENT when it is negative or
// E + r does not divide over the GPUs (the error names the nearest counts that
// do).
absl::StatusOr<int> UniformRedundantPerLayer(int num_experts, const PlanOptions& options);

// Plans every layer with UniformRedundantPerLayer slots beyond E, equal on
// every GPU. PlanResult::uniform_layers_from_eplb counts the layers where
// EPLB's placement replayed better. Pure function; thread-safe.
absl::StatusOr<PlanResult> PlanCraftUniform(const LoadTrace& trace, const PlanOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_UNIFORM_H_
