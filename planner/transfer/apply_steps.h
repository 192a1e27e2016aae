// Choosing how far along an incremental plan's frontier to go, and cutting
// the way there into applies that fit the workers' staging memory.
//
// A frontier point k (planner/transfer/incremental.h) is the committed
// layout after the plan's first moves. Going to k pays a modelled gain for as
// long as the load lasts and costs the time to move its experts; every expert
// arriving at a GPU also needs free HBM until the flip (the staging
// headroom). So:
//
//   const int target = BestNetBenefitPoint(plan, {horizon_s, bytes_per_s});
//   CRAFT_ASSIGN_OR_RETURN(int step, FurthestPointWithin(committed, plan, 0, target,
//                                                        headroom, bytes_per_expert));
//   // apply LayoutAtPoint(committed, plan, step); once committed, go on
//   // from `step` towards `target` the same way.
//
// Thread-safety: pure functions of their arguments.
#ifndef CRAFT_PLANNER_TRANSFER_APPLY_STEPS_H_
#define CRAFT_PLANNER_TRANSFER_APPLY_STEPS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/layout.h"
#include "planner/transfer/incremental.h"

namespace craft::planner {

struct NetBenefitModel {
  double horizon_s = 600;  // how long a modelled gain is assumed to last
  // Bytes per second one GPU receives: a point costs its largest arrival
  // into one GPU divided by this.
  double bytes_per_s = 100e9 / 8;
};

// Per frontier point: horizon_s x (1 - step_time(k) / step_time(0)) minus
// max_bytes_into_gpu(k) / bytes_per_s, in seconds. Point 0 is 0.
std::vector<double> NetBenefits(const IncrementalPlan& plan, const NetBenefitModel& model);

// The point with the largest net benefit (the fewest moves among equals);
// 0 when nothing pays for its move.
int BestNetBenefitPoint(const IncrementalPlan& plan, const NetBenefitModel& model);

// The furthest point k in (from, to] such that the layout at k, applied over
// the layout at `from`, brings at most `max_bytes_into_gpu` bytes into any one
// GPU (CountMovement); `from` when even the next point does not fit. Layouts
// are those of LayoutAtPoint(committed, plan, .). INVALID_ARGUMENT for points
// outside the frontier, from > to, or a negative limit.
absl::StatusOr<int> FurthestPointWithin(const Layout& committed, const IncrementalPlan& plan,
                                        int from, int to, int64_t max_bytes_into_gpu,
                                        int64_t bytes_per_expert);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_APPLY_STEPS_H_
