// Fitting the roofline model's slot curve (roofline.h) to measured points.
//
//   std::vector<CurvePoint> points = {{1, 70.2}, {512, 88.0}, {4096, 512.3}, ...};
//   absl::StatusOr<CurveFit> fit = FitSlotCurve(points);
//   // fit->params.fixed_us, per_token_us, knee_sharpness; fit->max_relative_error
//
// Pure function; thread-safe.
#ifndef CRAFT_PLANNER_COST_FIT_H_
#define CRAFT_PLANNER_COST_FIT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "planner/cost/roofline.h"

namespace craft::planner {

struct CurveFit {
  RooflineParams params;  // fixed_us, per_token_us, knee_sharpness; the rest 0
  double max_relative_error = 0;
  double rms_relative_error = 0;
};

// The fixed_us, per_token_us and knee_sharpness (from a grid including the
// hard max) minimising the squared log error over `points`: relative error,
// so the flat decode floor weighs as much as the long prefill slope. Needs at
// least 3 points with tokens >= 1 and us > 0, finite (INVALID_ARGUMENT).
absl::StatusOr<CurveFit> FitSlotCurve(const std::vector<CurvePoint>& points);

// The non-decreasing curve closest to `points` (sorted by tokens) in least
// squares: pool-adjacent-violators, so one slower measurement below a faster
// one (a kernel switch, or noise) is averaged with it, not dropped.
std::vector<CurvePoint> MonotoneCurve(std::vector<CurvePoint> points);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_COST_FIT_H_
