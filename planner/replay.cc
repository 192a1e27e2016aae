#include "planner/replay.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace craft::planner {

double Balancedness(absl::Span<const double> gpu_loads) {
  if (gpu_loads.empty()) return 1.0;
  double sum = 0.0;
  double max = 0.0;
  for (double load : gpu_loads) {
    sum += load;
    max = std::max(max, load);
  }
  if (max <= 0.0) return 1.0;
  return sum / static_cast<double>(gpu_loads.size()) / max;
}

LayerReplay::LayerReplay(const LayerPlacement& placement, int num_experts)
    : slot_expert_(placement.phy2log) {
  const std::vector<int> counts = placement.LogicalCounts(num_experts);
  gpu_begin_.push_back(0);
  for (size_t g = 0; g < placement.slots_per_gpu.size(); ++g) {
    gpu_begin_.push_back(gpu_begin_.back() + placement.slots_per_gpu[g]);
    if (placement.slots_per_gpu[g] > 0) busy_gpus_.push_back(static_cast<int>(g));
  }
  slot_share_.reserve(slot_expert_.size());
  for (int e : slot_expert_) slot_share_.push_back(1.0 / counts[e]);
}

void LayerReplay::GpuLoads(absl::Span<const int64_t> counts, absl::Span<double> gpu_loads) const {
  for (int g = 0; g < num_gpus(); ++g) {
    double load = 0.0;
    for (int p = gpu_begin_[g]; p < gpu_begin_[g + 1]; ++p) {
      load += static_cast<double>(counts[slot_expert_[p]]) * slot_share_[p];
    }
    gpu_loads[g] = load;
  }
}

LayerReplay::WindowLoad LayerReplay::Replay(absl::Span<const int64_t> counts) const {
  WindowLoad out;
  for (int g : busy_gpus_) {
    double load = 0.0;
    for (int p = gpu_begin_[g]; p < gpu_begin_[g + 1]; ++p) {
      load += static_cast<double>(counts[slot_expert_[p]]) * slot_share_[p];
    }
    out.total += load;
    out.max_gpu_load = std::max(out.max_gpu_load, load);
  }
  return out;
}

LayerStats ReplayLayer(const LayerReplay& replay, const LoadTrace& trace, int layer) {
  LayerStats stats{0.0, 0.0, 0.0};
  const int windows = trace.num_replay_windows();
  const double gpus = replay.num_gpus();
  for (int b = 0; b < windows; ++b) {
    const LayerReplay::WindowLoad load = replay.Replay(trace.replay_window(b, layer));
    // mean / max as in Balancedness(): an idle window counts as balanced.
    stats.balancedness += load.max_gpu_load > 0 ? load.total / gpus / load.max_gpu_load : 1.0;
    stats.max_gpu_load += load.max_gpu_load;
    stats.mean_gpu_load += load.total / gpus;
  }
  stats.balancedness /= windows;
  stats.max_gpu_load /= windows;
  stats.mean_gpu_load /= windows;
  return stats;
}

absl::StatusOr<LayoutStats> EvaluateLayout(const Layout& layout, const LoadTrace& trace) {
  if (layout.num_layers() != trace.num_layers() || layout.num_experts != trace.num_experts()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout is ", layout.num_layers(), " layers x ", layout.num_experts,
        " experts but the loads are ", trace.num_layers(), " x ", trace.num_experts()));
  }
  LayoutStats stats;
  stats.worst_balancedness = 1.0;
  double sum = 0.0;
  for (int l = 0; l < layout.num_layers(); ++l) {
    const LayerStats layer =
        ReplayLayer(LayerReplay(layout.layers[l], layout.num_experts), trace, l);
    stats.layers.push_back(layer);
    sum += layer.balancedness;
    stats.worst_balancedness = std::min(stats.worst_balancedness, layer.balancedness);
    stats.step_time += layer.max_gpu_load;
  }
  stats.mean_balancedness = sum / layout.num_layers();
  return stats;
}

}  // namespace craft::planner
