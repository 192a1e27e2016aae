#include "planner/cost/fit.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace craft::planner {
namespace {

double SquaredLogError(const RooflineParams& params, const std::vector<CurvePoint>& points) {
  double sum = 0;
  for (const CurvePoint& p : points) {
    const double e = std::log(SlotUs(params, p.tokens) / p.us);
    sum += e * e;
  }
  return sum;
}

// The per_token_us minimising the error for fixed `params.fixed_us` and knee:
// golden-section search on a log scale (the error is unimodal in the slope).
double BestSlope(RooflineParams params, const std::vector<CurvePoint>& points, double lo,
                 double hi) {
  const double phi = (std::sqrt(5.0) - 1) / 2;
  double a = std::log(lo), b = std::log(hi);
  for (int i = 0; i < 80; ++i) {
    const double c = b - phi * (b - a), d = a + phi * (b - a);
    params.per_token_us = std::exp(c);
    const double fc = SquaredLogError(params, points);
    params.per_token_us = std::exp(d);
    const double fd = SquaredLogError(params, points);
    (fc < fd ? b : a) = fc < fd ? d : c;
  }
  return std::exp((a + b) / 2);
}

}  // namespace

absl::StatusOr<CurveFit> FitSlotCurve(const std::vector<CurvePoint>& points) {
  if (points.size() < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("fitting needs at least 3 points, got ", points.size()));
  }
  double min_us = std::numeric_limits<double>::infinity(), max_us = 0, max_slope = 0;
  for (const CurvePoint& p : points) {
    if (!std::isfinite(p.tokens) || !std::isfinite(p.us) || p.tokens < 1 || p.us <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "every point needs tokens >= 1 and us > 0, got (", p.tokens, ", ", p.us, ")"));
    }
    min_us = std::min(min_us, p.us);
    max_us = std::max(max_us, p.us);
    max_slope = std::max(max_slope, p.us / p.tokens);
  }
  const double slope_lo = max_slope * 1e-6, slope_hi = max_slope * 2;
  // Knee sharpness candidates; 0 is the hard max.
  const double kSharpness[] = {0, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24};
  constexpr int kFixedSteps = 120;
  CurveFit best;
  double best_error = std::numeric_limits<double>::infinity();
  for (double p : kSharpness) {
    for (int i = 0; i <= kFixedSteps; ++i) {
      RooflineParams params;
      params.knee_sharpness = p;
      // fixed_us from min_us / 4 to max_us, log-spaced.
      params.fixed_us = min_us / 4 * std::pow(4 * max_us / min_us, i / double(kFixedSteps));
      params.per_token_us = BestSlope(params, points, slope_lo, slope_hi);
      const double error = SquaredLogError(params, points);
      if (error < best_error) best_error = error, best.params = params;
    }
  }
  double sum = 0;
  for (const CurvePoint& p : points) {
    const double e = std::abs(SlotUs(best.params, p.tokens) / p.us - 1);
    best.max_relative_error = std::max(best.max_relative_error, e);
    sum += e * e;
  }
  best.rms_relative_error = std::sqrt(sum / points.size());
  return best;
}

std::vector<CurvePoint> MonotoneCurve(std::vector<CurvePoint> points) {
  std::sort(points.begin(), points.end(),
            [](const CurvePoint& a, const CurvePoint& b) { return a.tokens < b.tokens; });
  // Blocks of pooled points: their mean and how many they hold.
  std::vector<std::pair<double, int>> blocks;
  for (const CurvePoint& p : points) {
    blocks.push_back({p.us, 1});
    while (blocks.size() > 1 && blocks[blocks.size() - 2].first > blocks.back().first) {
      const auto [mean, n] = blocks.back();
      blocks.pop_back();
      auto& [prev_mean, prev_n] = blocks.back();
      prev_mean = (prev_mean * prev_n + mean * n) / (prev_n + n);
      prev_n += n;
    }
  }
  size_t i = 0;
  for (const auto& [mean, n] : blocks) {
    for (int k = 0; k < n; ++k) points[i++].us = mean;
  }
  return points;
}

}  // namespace craft::planner
