// One entry point for every placement algorithm craft implements, so tools
// and the planner service pick an algorithm by name and compare them on the
// same loads.
//
//   PlanOptions options;
//   options.algorithm = Algorithm::kCraft;
//   options.cluster = {64, 8};
//   options.budget = 8;  // redundant slots per GPU
//   absl::StatusOr<PlanResult> plan = Plan(trace, options);
#ifndef CRAFT_PLANNER_PLAN_H_
#define CRAFT_PLANNER_PLAN_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/plan_types.h"

namespace craft::planner {

absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name);
absl::string_view AlgorithmName(Algorithm algorithm);

absl::StatusOr<CraftObjective> ParseObjective(absl::string_view name);

// Plans a layout for `trace` (its aggregate for placement, its windows for the
// benefit replay). Fails with INVALID_ARGUMENT on impossible constraints.
absl::StatusOr<PlanResult> Plan(const LoadTrace& trace, const PlanOptions& options);

// The step time `options.objective` optimises, for gates that compare
// layouts: modelled µs under kRoofline, else tokens (LayoutStats::step_time).
absl::StatusOr<double> ObjectiveStepTime(const Layout& layout, const LoadTrace& trace,
                                         const PlanOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_PLAN_H_
