#include "tools/evaluate/objective.h"

#include "common/status_macros.h"
#include "planner/craft/knapsack.h"
#include "planner/craft/paper_heuristic.h"

namespace craft::evaluate {

absl::StatusOr<ObjectiveComparison> CompareWithDp(
    const std::vector<planner::BenefitCurve>& curves) {
  const std::vector<int> picks = planner::SelectPaperReplicas(curves);
  ObjectiveComparison result;
  std::vector<std::vector<planner::KnapsackOption>> groups;
  for (size_t l = 0; l < curves.size(); ++l) {
    const planner::BenefitCurve& curve = curves[l];
    std::vector<planner::KnapsackOption> options;
    for (size_t k = 0; k < curve.replicas.size(); ++k) {
      options.push_back({curve.replicas[k], curve.balancedness[k] - curve.balancedness[0]});
      if (curve.replicas[k] == picks[l]) result.heuristic_gain += options.back().value;
    }
    groups.push_back(std::move(options));
    result.slots += picks[l];
  }
  CRAFT_ASSIGN_OR_RETURN(auto knapsack, planner::MultipleChoiceKnapsack::Solve(
                                            groups, static_cast<int>(result.slots)));
  CRAFT_ASSIGN_OR_RETURN(planner::KnapsackChoice best,
                         knapsack.Best(static_cast<int>(result.slots)));
  result.dp_gain = best.total_value;
  return result;
}

}  // namespace craft::evaluate
