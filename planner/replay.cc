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

LayerWindows::LayerWindows(const LoadTrace& trace, int layer)
    : num_windows_(trace.num_replay_windows()),
      counts_(static_cast<size_t>(trace.num_experts()) * num_windows_) {
  for (int b = 0; b < num_windows_; ++b) {
    const absl::Span<const int64_t> window = trace.replay_window(b, layer);
    for (size_t e = 0; e < window.size(); ++e) {
      counts_[e * num_windows_ + b] = static_cast<double>(window[e]);
    }
  }
}

LayerStats LayerReplay::Replay(const LayerWindows& windows) const {
  const int num_windows = windows.num_windows();
  // Per window: this GPU's load, then the busiest load and the total so far.
  // Each GPU's load sums its slots in slot order and the total sums GPUs in
  // order, as Replay(counts) does, so the numbers are the same bit for bit.
  std::vector<double> load(num_windows), max(num_windows, 0.0), total(num_windows, 0.0);
  for (int g : busy_gpus_) {
    std::fill(load.begin(), load.end(), 0.0);
    for (int p = gpu_begin_[g]; p < gpu_begin_[g + 1]; ++p) {
      const double* counts = windows.expert(slot_expert_[p]);
      const double share = slot_share_[p];
      for (int b = 0; b < num_windows; ++b) load[b] += counts[b] * share;
    }
    for (int b = 0; b < num_windows; ++b) {
      total[b] += load[b];
      max[b] = std::max(max[b], load[b]);
    }
  }
  LayerStats stats{0.0, 0.0, 0.0};
  const double gpus = num_gpus();
  for (int b = 0; b < num_windows; ++b) {
    // mean / max as in Balancedness(): an idle window counts as balanced.
    stats.balancedness += max[b] > 0 ? total[b] / gpus / max[b] : 1.0;
    stats.max_gpu_load += max[b];
    stats.mean_gpu_load += total[b] / gpus;
  }
  stats.balancedness /= num_windows;
  stats.max_gpu_load /= num_windows;
  stats.mean_gpu_load /= num_windows;
  return stats;
}

LayerStats ReplayLayer(const LayerReplay& replay, const LoadTrace& trace, int layer) {
  return replay.Replay(LayerWindows(trace, layer));
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
