// Seeded synthetic expert-load traces, for tests and experiments when no
// recorded trace fits (recorded traces are aggregates without windows).
//
//   SynthOptions options;
//   options.num_windows = 20;
//   absl::StatusOr<LoadTrace> trace = SynthesizeTrace(options);
#ifndef CRAFT_PLANNER_SYNTH_SYNTH_H_
#define CRAFT_PLANNER_SYNTH_SYNTH_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "planner/load_trace.h"

namespace craft::planner {

// Shape and skew of a synthetic trace. Defaults resemble a DeepSeek-V3-sized
// model (58 MoE layers, 256 experts, top-8).
struct SynthOptions {
  int num_layers = 58;
  int num_experts = 256;
  int top_k = 8;
  int num_windows = 100;
  // Tokens routed per window in every layer; each makes top_k distinct choices.
  int tokens_per_window = 4096;
  uint64_t seed = 1;
  // Share of layers (rounded to a whole number) that get hot experts; the rest
  // are nearly uniform, their hottest expert at 1.5-2.5x the mean load.
  double skewed_layer_fraction = 0.5;
  // A skewed layer's hottest expert expects a load of r x the mean, with r
  // drawn uniformly from [min_hot_ratio, max_hot_ratio]. An expert is chosen at
  // most once per token, so r cannot exceed num_experts / top_k.
  double max_hot_ratio = 30.0;
  double min_hot_ratio = 10.0;
  // Per-window random walk of every expert's popularity: log-popularity moves
  // by a normal step with this standard deviation each window.
  double drift = 0.02;
};

// Generates `options.num_windows` windows of routing counts and their sum as
// the aggregate. Each layer gets a popularity profile; each window drifts it,
// and every token picks top_k distinct experts by sequential sampling without
// replacement, with weights calibrated so an expert's expected load matches
// its profile (see synth.cc). Hot ratios are expectations: measured ones vary
// with sampling noise and drift.
//
// Deterministic: the same options give the same trace on every run and
// platform with IEEE doubles (the sampler uses std::mt19937_64, whose output
// the standard fixes, and no <random> distribution, whose output it does
// not). A libm whose exp/log round differently could in rare cases flip a
// draw. Every layer draws from its own stream (seeded from `seed` and the
// layer index), so layers could be generated in parallel without changing
// the output.
//
// INVALID_ARGUMENT for non-positive sizes, top_k > num_experts, ratios below 1
// or out of order, max_hot_ratio above num_experts / top_k, a fraction outside
// [0, 1], a negative drift, or a trace over 2^28 cells.
//
// Thread-safe: a pure function of its arguments.
absl::StatusOr<LoadTrace> SynthesizeTrace(const SynthOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_SYNTH_SYNTH_H_
