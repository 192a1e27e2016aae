#include "planner/cost/roofline.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::planner {

absl::Status RooflineParams::Validate() const {
  const struct {
    const char* name;
    double value;
  } fields[] = {{"fixed_us", fixed_us},
                {"per_token_us", per_token_us},
                {"knee_sharpness", knee_sharpness},
                {"gpu_fixed_us", gpu_fixed_us},
                {"dispatch_us_per_token", dispatch_us_per_token}};
  for (const auto& field : fields) {
    if (!std::isfinite(field.value) || field.value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field.name, " must be a finite number >= 0, got ", field.value));
    }
  }
  if (per_token_us <= 0) return absl::InvalidArgumentError("per_token_us must be > 0");
  for (size_t i = 0; i < curve.size(); ++i) {
    const CurvePoint& p = curve[i];
    if (!std::isfinite(p.tokens) || !std::isfinite(p.us) || p.tokens < 1 || p.us <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "curve point ", i, " needs tokens >= 1 and us > 0, got [", p.tokens, ", ", p.us, "]"));
    }
    if (i > 0 && !(p.tokens > curve[i - 1].tokens)) {
      return absl::InvalidArgumentError(
          absl::StrCat("curve tokens must ascend: point ", i, " has ", p.tokens));
    }
    if (i > 0 && p.us < curve[i - 1].us) {
      return absl::InvalidArgumentError(absl::StrCat(
          "curve times must not fall as tokens grow: point ", i, " has ", p.us, " us"));
    }
  }
  if (knee_sharpness != 0 && knee_sharpness < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("knee_sharpness must be 0 (a hard max) or >= 1, got ", knee_sharpness));
  }
  return absl::OkStatus();
}

namespace {

// The measured curve at x >= 1 (non-empty curve).
double CurveUs(const RooflineParams& params, double x) {
  const std::vector<CurvePoint>& curve = params.curve;
  if (x <= curve.front().tokens) return curve.front().us;
  // Past the last point the FFN is compute-bound: time grows in proportion.
  if (x >= curve.back().tokens) return curve.back().us * x / curve.back().tokens;
  const auto hi = std::upper_bound(curve.begin(), curve.end(), x,
                                   [](double v, const CurvePoint& p) { return v < p.tokens; });
  const auto lo = hi - 1;
  return lo->us + (hi->us - lo->us) * (x - lo->tokens) / (hi->tokens - lo->tokens);
}

}  // namespace

double SlotUs(const RooflineParams& params, double tokens) {
  if (!(tokens > 0)) return 0;
  // Below one token the slot runs in a fraction `tokens` of the steps.
  const double x = std::max(tokens, 1.0);
  if (!params.curve.empty()) {
    const double us = CurveUs(params, x);
    return tokens < 1 ? tokens * us : us;
  }
  const double compute = params.per_token_us * x;
  double us;
  if (params.knee_sharpness == 0 || params.fixed_us == 0) {
    us = std::max(params.fixed_us, compute);
  } else {
    // Scaled by the larger term so that large p neither overflows nor underflows.
    const double big = std::max(params.fixed_us, compute);
    const double p = params.knee_sharpness;
    us = big * std::pow(std::pow(params.fixed_us / big, p) + std::pow(compute / big, p), 1 / p);
  }
  return tokens < 1 ? tokens * us : us;
}

double GpuUs(const RooflineParams& params, absl::Span<const double> slot_tokens) {
  if (slot_tokens.empty()) return 0;
  double us = params.gpu_fixed_us;
  double tokens = 0;
  for (double x : slot_tokens) {
    us += SlotUs(params, x);
    tokens += x;
  }
  return us + params.dispatch_us_per_token * tokens;
}

double RooflineModel::LayerUs(const LayerPlacement& placement, int num_experts,
                              absl::Span<const int64_t> counts) const {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  const int num_gpus = static_cast<int>(placement.slots_per_gpu.size());
  const double assignments = num_gpus * regime_.tokens_per_gpu * regime_.top_k;
  const double scale = total > 0 ? assignments / total : 0;
  std::vector<int> replicas(num_experts, 0);
  for (int e : placement.phy2log) ++replicas[e];
  double busiest = 0;
  std::vector<double> slot_tokens;
  int slot = 0;
  for (int g = 0; g < num_gpus; ++g) {
    slot_tokens.clear();
    for (int s = 0; s < placement.slots_per_gpu[g]; ++s, ++slot) {
      const int e = placement.phy2log[slot];
      slot_tokens.push_back(counts[e] * scale / replicas[e]);
    }
    busiest = std::max(busiest, GpuUs(params_, slot_tokens));
  }
  return busiest;
}

absl::Status RooflineModel::Validate() const {
  CRAFT_RETURN_IF_ERROR(params_.Validate());
  if (!std::isfinite(regime_.tokens_per_gpu) || regime_.tokens_per_gpu <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens per GPU must be > 0, got ", regime_.tokens_per_gpu));
  }
  if (regime_.top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("top-k must be >= 1, got ", regime_.top_k));
  }
  return absl::OkStatus();
}

double RooflineModel::MeanLayerUs(const LayerPlacement& placement, const LoadTrace& trace,
                                  int layer) const {
  const int windows = trace.num_replay_windows();
  double sum = 0;
  for (int b = 0; b < windows; ++b) {
    sum += LayerUs(placement, trace.num_experts(), trace.replay_window(b, layer));
  }
  return windows > 0 ? sum / windows : 0;
}

absl::StatusOr<double> RooflineModel::StepUs(const Layout& layout, const LoadTrace& trace) const {
  if (layout.num_layers() != trace.num_layers() || layout.num_experts != trace.num_experts()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout is ", layout.num_layers(), " layers x ", layout.num_experts,
        " experts but the loads are ", trace.num_layers(), " x ", trace.num_experts()));
  }
  double us = 0;
  for (int l = 0; l < trace.num_layers(); ++l) us += MeanLayerUs(layout.layers[l], trace, l);
  return us;
}

}  // namespace craft::planner
