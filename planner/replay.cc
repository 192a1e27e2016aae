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
    : num_gpus_(static_cast<int>(placement.slots_per_gpu.size())),
      slot_gpu_(placement.SlotGpus()),
      slot_expert_(placement.phy2log),
      expert_share_(num_experts, 0.0) {
  const std::vector<int> counts = placement.LogicalCounts(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    if (counts[e] > 0) expert_share_[e] = 1.0 / counts[e];
  }
}

void LayerReplay::GpuLoads(absl::Span<const int64_t> counts, absl::Span<double> gpu_loads) const {
  std::fill(gpu_loads.begin(), gpu_loads.end(), 0.0);
  for (size_t p = 0; p < slot_gpu_.size(); ++p) {
    const int e = slot_expert_[p];
    gpu_loads[slot_gpu_[p]] += static_cast<double>(counts[e]) * expert_share_[e];
  }
}

LayerStats ReplayLayer(const LayerReplay& replay, const LoadTrace& trace, int layer) {
  std::vector<double> loads(replay.num_gpus());
  LayerStats stats{0.0, 0.0, 0.0};
  const int windows = trace.num_replay_windows();
  for (int b = 0; b < windows; ++b) {
    replay.GpuLoads(trace.replay_window(b, layer), absl::MakeSpan(loads));
    double sum = 0.0;
    double max = 0.0;
    for (double load : loads) {
      sum += load;
      max = std::max(max, load);
    }
    stats.balancedness += Balancedness(loads);
    stats.max_gpu_load += max;
    stats.mean_gpu_load += sum / replay.num_gpus();
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
