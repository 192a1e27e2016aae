// Replaying load counts against a layout: per-GPU loads, balancedness and the
// modelled step time.
#ifndef CRAFT_PLANNER_REPLAY_H_
#define CRAFT_PLANNER_REPLAY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner {

// mean / max of the GPU loads, in (0, 1]; 1 when nothing was routed.
double Balancedness(absl::Span<const double> gpu_loads);

// One layer's replay windows, expert-major and as doubles, made once and
// replayed against many placements of the layer (benefit curves replay every
// candidate placement on the same windows).
class LayerWindows {
 public:
  LayerWindows(const LoadTrace& trace, int layer);

  int num_windows() const { return num_windows_; }
  // Expert e's count in every window, window-contiguous.
  const double* expert(int e) const {
    return counts_.data() + static_cast<size_t>(e) * num_windows_;
  }

 private:
  int num_windows_;
  std::vector<double> counts_;  // [expert][window]
};

// A layer's replay averaged over windows.
struct LayerStats {
  double balancedness = 1.0;  // mean over windows of mean/max GPU load
  double max_gpu_load = 0.0;  // mean over windows of the busiest GPU's load
  double mean_gpu_load = 0.0;
};

// One layer's placement prepared for fast replay of many windows: each
// expert's tokens are split evenly over its replicas (count / logcnt), as
// serving engines' static dispatch does on average.
class LayerReplay {
 public:
  LayerReplay(const LayerPlacement& placement, int num_experts);

  int num_gpus() const { return static_cast<int>(gpu_begin_.size()) - 1; }
  // Writes every GPU's load for one window's per-expert counts into `gpu_loads`
  // (size num_gpus).
  void GpuLoads(absl::Span<const int64_t> counts, absl::Span<double> gpu_loads) const;

  // The busiest GPU's load and the total, without materialising the loads:
  // the inner loop of benefit curves, run once per layer, candidate and window.
  struct WindowLoad {
    double max_gpu_load = 0.0;
    double total = 0.0;
  };
  WindowLoad Replay(absl::Span<const int64_t> counts) const;

  // Every window at once, GPU by GPU and slot by slot over contiguous
  // windows (no gather per window): the inner loop of benefit curves, run once
  // per layer and candidate. Same numbers as Replay on each window.
  LayerStats Replay(const LayerWindows& windows) const;

 private:
  // Slots are GPU-major, so GPU g owns slots [gpu_begin_[g], gpu_begin_[g+1])
  // and its load is summed in a register: no scatter, no store-to-load chain.
  std::vector<int> gpu_begin_;
  // GPUs holding a slot of the layer: an empty GPU's load is 0, which changes
  // neither the total nor the maximum, and with more GPUs than slots (a
  // 4,096-GPU group of 256 experts) most GPUs of a layer are empty.
  std::vector<int> busy_gpus_;
  std::vector<int> slot_expert_;
  std::vector<double> slot_share_;  // 1 / logcnt of the slot's expert
};

// Replays every replay window of `layer` in `trace`.
LayerStats ReplayLayer(const LayerReplay& replay, const LoadTrace& trace, int layer);

struct LayoutStats {
  std::vector<LayerStats> layers;
  double mean_balancedness = 1.0;   // model level: plain mean over layers
  double worst_balancedness = 1.0;  // the worst layer
  // Modelled MoE step time in tokens: sum over layers of the busiest GPU's
  // load, since every layer waits for its slowest GPU.
  double step_time = 0.0;
};

// Replays `trace` against `layout`. Fails when their shapes differ.
absl::StatusOr<LayoutStats> EvaluateLayout(const Layout& layout, const LoadTrace& trace);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_REPLAY_H_
