// Implementation detail of the incremental planner: one layer's placement
// replayed on a fixed set of windows, answering "how would balancedness and
// the busiest GPU's load change if these slots changed?" without replaying the
// whole layer again. Not part of the public API.
#ifndef CRAFT_PLANNER_TRANSFER_INTERNAL_LAYER_MODEL_H_
#define CRAFT_PLANNER_TRANSFER_INTERNAL_LAYER_MODEL_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner::transfer_internal {

// One slot change inside a layer: `delta` (+1 or -1) replicas of `expert` on
// `gpu`.
struct ReplicaChange {
  int gpu = 0;
  int expert = 0;
  int delta = 0;
};

// What a set of changes does to the layer, averaged over the windows.
struct LayerDelta {
  bool valid = false;       // false when an expert would lose its last replica
  double balancedness = 0;  // change in mean-over-windows balancedness
  double max_gpu_load = 0;  // change in mean-over-windows busiest-GPU load
};

// Thread-safety: const methods may run concurrently; Reset is not synchronised.
// The trace must outlive the model.
class LayerModel {
 public:
  // Replays windows `windows` (indices into trace.replay_window) of `layer`.
  LayerModel(const LoadTrace& trace, int layer, std::vector<int> windows, int num_gpus);

  // Rebuilds every per-window GPU load from `placement`: O(windows x slots).
  void Reset(const LayerPlacement& placement);
  // The same after a change that touched only the loads of `gpus` (the
  // holders of every expert whose replica count changed, before and after,
  // and the GPUs edited): O(windows x (D + their slots)).
  void Update(const LayerPlacement& placement, absl::Span<const int> gpus);

  // Same definitions as replay.h's ReplayLayer, on this model's windows.
  double balancedness() const { return balancedness_; }
  double max_gpu_load() const { return max_gpu_load_; }

  // The change `changes` would make. O(windows x affected GPUs).
  LayerDelta Evaluate(absl::Span<const ReplicaChange> changes) const;

  // Evaluate({{g, expert, -1}}) for every GPU g holding `expert`, at once:
  // one entry per distinct holder, ascending, with the same numbers bit for
  // bit. Every such drop changes the same GPUs (the holders), so the busiest
  // GPU outside them is found once instead of once per holder: the donor
  // scan of a re-plan asks this of every GPU, hundreds of them holding a hot
  // expert at thousands of GPUs. O(windows x (holders + the GPUs outside
  // them when every remembered busiest GPU is a holder)).
  std::vector<std::pair<int, LayerDelta>> EvaluateDrops(int expert) const;

  int num_gpus() const { return num_gpus_; }
  // Replicas of `expert` in the placement (logcnt).
  int Replicas(int expert) const { return replicas_[expert]; }
  // GPU g's experts, in slot order.
  const std::vector<int>& GpuExperts(int gpu) const { return gpu_experts_[gpu]; }
  // The GPUs holding `expert`, ascending, once per replica.
  const std::vector<int>& Holders(int expert) const { return holders_[expert]; }
  bool Holds(int gpu, int expert) const;
  // Load of one replica of `expert`, summed over the windows.
  double ReplicaLoad(int expert) const { return expert_total_[expert] / replicas_[expert]; }
  // GPU g's load summed over the windows.
  double GpuLoad(int gpu) const { return gpu_total_[gpu]; }
  // In how many windows GPU g is the busiest.
  int TimesBusiest(int gpu) const { return times_busiest_[gpu]; }

 private:
  static constexpr int kTop = 4;  // busiest GPUs remembered per window

  double LoadAt(int gpu, int window) const {
    return load_[static_cast<size_t>(gpu) * num_windows_ + window];
  }
  // Slots per GPU and replica counts from `placement`.
  void ReadPlacement(const LayerPlacement& placement);
  // GPU g's load in every window, into load_, and its total.
  void LoadGpu(int gpu);
  // Ranks GPU g's load among the window's remembered busiest.
  void Rank(int window, int gpu);
  // The layer's statistics from the remembered busiest.
  void Summarise();

  // Laid out expert- and GPU-major, so Evaluate's inner loops run over
  // contiguous windows.
  const int num_gpus_;
  const int num_experts_;
  const int num_windows_;
  std::vector<double> counts_;        // [expert][window]
  std::vector<double> expert_total_;  // per expert, over windows
  std::vector<double> window_mean_;   // per window: total / D

  std::vector<std::vector<int>> gpu_experts_;
  std::vector<std::vector<int>> holders_;  // per expert
  std::vector<int> replicas_;
  std::vector<double> load_;            // [gpu][window]
  std::vector<int> top_;                // [window][kTop]: GPUs, busiest first
  std::vector<double> top_load_;        // [window][kTop]: their loads (-1: none)
  std::vector<double> window_max_;      // per window: the busiest GPU's load
  std::vector<double> window_balance_;  // per window: mean / max
  std::vector<double> gpu_total_;
  std::vector<int> times_busiest_;
  double balancedness_ = 1;
  double max_gpu_load_ = 0;
};

}  // namespace craft::planner::transfer_internal

#endif  // CRAFT_PLANNER_TRANSFER_INTERNAL_LAYER_MODEL_H_
