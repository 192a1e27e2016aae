// Benefit curves: how much each layer's balance improves per replica count.
#ifndef CRAFT_PLANNER_CRAFT_BENEFIT_H_
#define CRAFT_PLANNER_CRAFT_BENEFIT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "planner/cluster.h"
#include "planner/cost/roofline.h"
#include "planner/craft/packing.h"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/plan_types.h"

namespace craft::planner {

// Up to this many GPUs the default candidates are every count 0..D.
inline constexpr int kEveryCandidateUpToGpus = 128;

// The replica counts a layer may take by default. Up to
// kEveryCandidateUpToGpus GPUs: every count 0..D, so the knapsack's plan is
// the exact optimum over per-layer counts (the paper's {0, 1, 2, 4, ..., D}
// lost 0.05 balancedness on Qwen3-235B at D = 32). Above: every count 0..64,
// then 64 counts spread evenly up to D, because each candidate costs a
// packing and a replay of every window, and (E + D) x D grows fast.
std::vector<int> DefaultCandidates(int num_gpus);

// Sorted, unique, with 0 added; INVALID_ARGUMENT on negative counts or counts
// a layer of `num_experts` experts cannot hold (more than E x (D - 1)).
absl::StatusOr<std::vector<int>> NormalizeCandidates(std::vector<int> candidates, int num_experts,
                                                     int num_gpus);

// Replicates one layer to `num_experts + redundant` physical experts (at most
// D replicas per expert) and packs them onto GPUs holding `slots_per_gpu`.
absl::StatusOr<LayerPlacement> PlaceLayer(absl::Span<const int64_t> weight, int redundant,
                                          const std::vector<int>& slots_per_gpu,
                                          const ClusterShape& cluster,
                                          const PackingOptions& options);

// For every layer and candidate r: place the layer with r redundant slots
// (spread evenly over GPUs) from the trace's aggregate, replay every window,
// and record mean balancedness and busiest-GPU load. This replay is where
// CRAFT's estimate comes from; it dominates planning time. Layers run on
// `threads` threads (0: every core).
// Pure function; thread-safe.
// With `roofline`, also each candidate's modelled busiest-GPU µs.
absl::StatusOr<std::vector<BenefitCurve>> ComputeBenefitCurves(
    const LoadTrace& trace, const ClusterShape& cluster, const std::vector<int>& candidates,
    const PackingOptions& options, int threads = 1, const RooflineModel* roofline = nullptr);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_BENEFIT_H_
