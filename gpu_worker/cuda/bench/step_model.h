// The token bookkeeping behind step_bench: scaling a trace layer to a batch,
// dispatching each expert's tokens over its replicas, and the planner's
// modelled step time for the same layout and counts. Plain C++.
//
//   std::vector<int64_t> counts = ScaleCounts(trace.aggregate(layer), gpus * tokens * top_k);
//   std::vector<int64_t> slot_tokens = DispatchToSlots(layout.layers[layer], counts);
//   double modelled = ModelledStep(layout.layers[layer], num_experts, counts);
//
// Thread-compatible (pure functions).
#ifndef CRAFT_GPU_WORKER_CUDA_BENCH_STEP_MODEL_H_
#define CRAFT_GPU_WORKER_CUDA_BENCH_STEP_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::gpu::bench {

// `counts` scaled to sum to `total` by largest remainders (ties to the lower
// index). All-zero counts stay zero.
std::vector<int64_t> ScaleCounts(absl::Span<const int64_t> counts, int64_t total);

// The tokens of every slot when each expert's tokens are split over its
// replicas in slot order: floor(c / r) each, and one more for the first
// c mod r (what round-robin replica choice gives up to rounding).
std::vector<int64_t> DispatchToSlots(const planner::LayerPlacement& layer,
                                     absl::Span<const int64_t> counts);

// Sums slot tokens per GPU.
std::vector<int64_t> TokensPerGpu(const planner::LayerPlacement& layer,
                                  absl::Span<const int64_t> slot_tokens);

// The planner's modelled step time of one layer: the busiest GPU's tokens
// with every expert's tokens split evenly over its replicas (what craftctl
// eval reports, through planner::LayerReplay).
double ModelledStep(const planner::LayerPlacement& layer, int num_experts,
                    absl::Span<const int64_t> counts);

// Expert e on GPU e * num_gpus / num_experts, no replicas: what an engine
// does without load-aware placement. Preconditions: num_experts >= num_gpus.
planner::LayerPlacement ContiguousPlacement(int num_experts, int num_gpus);

// Max over mean GPU load of `counts` under `layer` (1 when balanced).
double Imbalance(const planner::LayerPlacement& layer, int num_experts,
                 absl::Span<const int64_t> counts);

}  // namespace craft::gpu::bench

#endif  // CRAFT_GPU_WORKER_CUDA_BENCH_STEP_MODEL_H_
