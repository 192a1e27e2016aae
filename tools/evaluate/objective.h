// The paper's released heuristic against the knapsack DP on the heuristic's
// own benefit curves and slot count: the DP is exact, so it can never find
// less summed balancedness gain.
#ifndef CRAFT_TOOLS_EVALUATE_OBJECTIVE_H_
#define CRAFT_TOOLS_EVALUATE_OBJECTIVE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/plan.h"

namespace craft::evaluate {

struct ObjectiveComparison {
  int64_t slots = 0;          // redundant slots the heuristic picks (before rounding)
  double heuristic_gain = 0;  // sum over layers of bal(r_l) - bal(0) at its picks
  double dp_gain = 0;         // the DP's best sum within the same slots
};

// `curves` as PlanCraftPaper measures them (candidates {0, 4, 8, 16, 32}).
absl::StatusOr<ObjectiveComparison> CompareWithDp(const std::vector<planner::BenefitCurve>& curves);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_OBJECTIVE_H_
