// The traffic generator: the tokens of every window for the whole cluster,
// routed with this worker's serving layout and counted on its own slots.
//
// Every worker generates the same tokens: a window's expert choices depend
// only on (--seed, window id, layer) and the popularity profile, so workers
// started with the same flags agree without talking to each other. Each worker
// routes all of them (routing.h) and counts only what lands on its own slots
// (receive-side counting: the tokens its GPU computes). Summed over all GPUs
// serving the same layout, a layer's counts are tokens_per_window x top_k.
//
//   TrafficGenerator traffic = *TrafficGenerator::Create(options, *Popularity::FromTrace(trace));
//   auto counts = traffic.CountWindow(window_id, routing, mine, backend->counter());
//
// Thread-safety: immutable after construction; CountWindow uses the counter
// it is given, which must not be shared.
#ifndef CRAFT_GPU_WORKER_TRAFFIC_H_
#define CRAFT_GPU_WORKER_TRAFFIC_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/routing.h"
#include "planner/load_trace.h"

namespace craft::gpu_worker {

// Per window and layer, how popular every logical expert is (a weight per
// expert, typically a token count).
class Popularity {
 public:
  // A recorded trace: its windows, cycled (window id modulo their count), or
  // its aggregate when it has none. INVALID_ARGUMENT for a trace that fails
  // LoadTrace::Validate or a layer total over 2^62.
  static absl::StatusOr<Popularity> FromTrace(planner::LoadTrace trace);
  // A synthetic profile. skew <= 1: every expert equally popular. skew > 1:
  // planner::SynthesizeTrace with 16 windows in which the hottest expert of a
  // skewed layer (half the layers) expects `skew` x the mean load, capped at
  // num_experts / top_k (a token picks an expert at most once).
  static absl::StatusOr<Popularity> Synthetic(int num_layers, int num_experts, int top_k,
                                              double skew, uint64_t seed);

  int num_layers() const { return trace_.num_layers(); }
  int num_experts() const { return trace_.num_experts(); }
  // The expert weights of `layer` during window `window_id`.
  absl::Span<const int64_t> Weights(int64_t window_id, int layer) const;

 private:
  explicit Popularity(planner::LoadTrace trace) : trace_(std::move(trace)) {}

  planner::LoadTrace trace_;
};

struct TrafficOptions {
  int tokens_per_window = 512;  // tokens of the whole cluster per window
  int top_k = 1;
  uint64_t seed = 1;
};

inline constexpr int kMaxTokensPerWindow = 1 << 20;

class TrafficGenerator {
 public:
  // INVALID_ARGUMENT for tokens_per_window outside [1, kMaxTokensPerWindow] or
  // top_k outside [1, num_experts].
  static absl::StatusOr<TrafficGenerator> Create(TrafficOptions options, Popularity popularity);

  int num_layers() const { return popularity_.num_layers(); }
  int num_experts() const { return popularity_.num_experts(); }
  const TrafficOptions& options() const { return options_; }

  // The experts every token of `layer` picks in window `window_id`: top_k
  // distinct experts per token, token-major (entry t * top_k + k). Sequential
  // weighted sampling without replacement from the window's popularity; when
  // only zero-weight experts remain, uniformly among them.
  std::vector<int32_t> SampleExperts(int64_t window_id, int layer) const;

  // The global slot of every entry of SampleExperts, routed with `routing`.
  std::vector<int> RouteLayer(int64_t window_id, int layer, const RoutingTable& routing) const;

  // Hands the window's router choices of every layer to `counter`, which
  // routes them and counts those that land on `mine`'s slots: [layer][local
  // slot]. `routing` and `mine` must come from the same layout, of this
  // generator's shape.
  absl::StatusOr<std::vector<std::vector<int64_t>>> CountWindow(int64_t window_id,
                                                                const RoutingTable& routing,
                                                                const LocalLayout& mine,
                                                                LoadCounter* counter) const;

 private:
  TrafficGenerator(TrafficOptions options, Popularity popularity)
      : options_(options), popularity_(std::move(popularity)) {}

  TrafficOptions options_;
  Popularity popularity_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_TRAFFIC_H_
