#include "planner/transfer/apply_steps.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/transfer/movement.h"

namespace craft::planner {

std::vector<double> NetBenefits(const IncrementalPlan& plan, const NetBenefitModel& model) {
  std::vector<double> net(plan.frontier.size(), 0.0);
  if (plan.frontier.empty()) return net;
  const double step0 = plan.frontier[0].predicted_step_time;
  for (size_t k = 1; k < plan.frontier.size(); ++k) {
    const FrontierPoint& point = plan.frontier[k];
    const double gain = step0 > 0 ? 1.0 - point.predicted_step_time / step0 : 0.0;
    net[k] =
        model.horizon_s * gain - static_cast<double>(point.max_bytes_into_gpu) / model.bytes_per_s;
  }
  return net;
}

int BestNetBenefitPoint(const IncrementalPlan& plan, const NetBenefitModel& model) {
  const std::vector<double> net = NetBenefits(plan, model);
  int best = 0;
  for (int k = 1; k < static_cast<int>(net.size()); ++k) {
    if (net[k] > net[best]) best = k;  // strictly: among equals the fewest moves
  }
  return best;
}

absl::StatusOr<int> FurthestPointWithin(const Layout& committed, const IncrementalPlan& plan,
                                        int from, int to, int64_t max_bytes_into_gpu,
                                        int64_t bytes_per_expert) {
  const int points = static_cast<int>(plan.frontier.size());
  if (from < 0 || to >= points || from > to) {
    return absl::InvalidArgumentError(absl::StrCat(
        "points [", from, ", ", to, "] are not an interval of a frontier of ", points, " points"));
  }
  if (max_bytes_into_gpu < 0) {
    return absl::InvalidArgumentError("a step's byte limit must be non-negative");
  }
  CRAFT_ASSIGN_OR_RETURN(const Layout start, LayoutAtPoint(committed, plan, from));
  Layout layout = start;
  int furthest = from;
  // Arrivals relative to `start` need not grow with every move (a later move
  // may drop a replica that had arrived), so every point up to `to` is tried.
  for (int k = from + 1; k <= to; ++k) {
    for (int m = plan.frontier[k - 1].num_moves; m < plan.frontier[k].num_moves; ++m) {
      CRAFT_RETURN_IF_ERROR(ApplyMove(plan.moves[m], layout));
    }
    CRAFT_ASSIGN_OR_RETURN(const Movement moved, CountMovement(start, layout, bytes_per_expert));
    if (moved.max_bytes_into_gpu <= max_bytes_into_gpu) furthest = k;
  }
  return furthest;
}

}  // namespace craft::planner
