// The roofline step-time model: what one GPU spends on one MoE layer when a
// replica's weights are read once per step however few tokens reach it.
//
// A slot with x > 0 tokens costs
//   slot_us(x) = (fixed_us^p + (per_token_us * x)^p)^(1/p)     for x >= 1
// a smooth maximum of a flat weight-read floor and a linear compute term; p
// (knee_sharpness) sets how sharply the knee turns, and p = 0 stands for
// infinity, the plain max(fixed_us, per_token_us * x). A slot with no tokens
// costs nothing (engines skip empty experts), and 0 < x < 1, a mean from load
// counts, costs x * slot_us(1): the slot runs in a fraction x of the steps.
// A GPU's layer time is
//   gpu_fixed_us + sum over its slots of slot_us(x_s) + dispatch_us_per_token * X
// for X = sum_s x_s. The token objective is the special case fixed_us = 0.
//
// Where a calibration carries its measured `curve` (cuBLAS picks kernels by
// size, so the real curve has steps the smooth knee cannot follow), slot_us
// interpolates it linearly instead, flat below its first point and in
// proportion to tokens past its last (compute-bound there; the measured
// slope, where the smooth fit's per_token_us, bent by the knee, is not).
//
//   RooflineParams params = calibration.params;
//   RooflineModel model(params, {/*tokens_per_gpu=*/256, /*top_k=*/8});
//   double us = model.LayerUs(placement, num_experts, counts);
//
// Thread-compatible (pure functions over const state).
#ifndef CRAFT_PLANNER_COST_ROOFLINE_H_
#define CRAFT_PLANNER_COST_ROOFLINE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner {

// One measurement: a slot's time with `tokens` tokens.
struct CurvePoint {
  double tokens = 0;  // >= 1
  double us = 0;      // > 0
};

struct RooflineParams {
  double fixed_us = 0;               // a slot's floor: its weights read once
  double per_token_us = 0;           // a slot's slope above the knee
  double knee_sharpness = 0;         // p of the smooth max; 0 = the hard max
  double gpu_fixed_us = 0;           // per GPU and layer (launches)
  double dispatch_us_per_token = 0;  // per token the GPU receives
  std::vector<CurvePoint> curve;     // optional measured slot curve (see above)

  // INVALID_ARGUMENT unless every field is finite and >= 0, per_token_us > 0,
  // knee_sharpness is 0 or >= 1, and the curve's tokens (>= 1) ascend and its
  // times (> 0) never fall, so that slot_us never falls as tokens grow.
  absl::Status Validate() const;
};

// The serving regime the model is evaluated at.
struct Regime {
  double tokens_per_gpu = 0;  // tokens per GPU per step (decode: the batch)
  int top_k = 8;              // experts per token
};

// Cost of one slot with `tokens` (possibly fractional) tokens, in µs.
double SlotUs(const RooflineParams& params, double tokens);

// Cost of one GPU's slots, given each slot's tokens, in µs (0 with no slots).
double GpuUs(const RooflineParams& params, absl::Span<const double> slot_tokens);

class RooflineModel {
 public:
  RooflineModel(const RooflineParams& params, const Regime& regime)
      : params_(params), regime_(regime) {}

  const RooflineParams& params() const { return params_; }
  const Regime& regime() const { return regime_; }

  // INVALID_ARGUMENT on bad parameters or a regime without tokens.
  absl::Status Validate() const;

  // The busiest GPU's modelled time in µs for one layer: `counts` (per
  // logical expert, any unit) are scaled to num_gpus x tokens_per_gpu x top_k
  // assignments and split evenly over each expert's replicas.
  double LayerUs(const LayerPlacement& placement, int num_experts,
                 absl::Span<const int64_t> counts) const;

  // LayerUs of layer `layer` averaged over the trace's replay windows.
  double MeanLayerUs(const LayerPlacement& placement, const LoadTrace& trace, int layer) const;

  // The modelled MoE step in µs: the sum over layers of MeanLayerUs, since
  // every layer waits for its slowest GPU. Fails when the shapes differ.
  absl::StatusOr<double> StepUs(const Layout& layout, const LoadTrace& trace) const;

 private:
  RooflineParams params_;
  Regime regime_;
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_COST_ROOFLINE_H_
