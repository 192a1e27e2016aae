#include "gpu_worker/cuda/bench/step_model.h"

#include <algorithm>
#include <numeric>

#include "planner/replay.h"

namespace craft::gpu::bench {

std::vector<int64_t> ScaleCounts(absl::Span<const int64_t> counts, int64_t total) {
  const long double sum = std::accumulate(counts.begin(), counts.end(), 0.0L);
  std::vector<int64_t> scaled(counts.size(), 0);
  if (sum == 0) return scaled;
  std::vector<std::pair<long double, size_t>> remainders;
  int64_t assigned = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const long double exact = counts[e] * static_cast<long double>(total) / sum;
    scaled[e] = static_cast<int64_t>(exact);
    assigned += scaled[e];
    remainders.push_back({exact - scaled[e], e});
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; assigned < total && i < remainders.size(); ++i, ++assigned) {
    ++scaled[remainders[i].second];
  }
  return scaled;
}

std::vector<int64_t> DispatchToSlots(const planner::LayerPlacement& layer,
                                     absl::Span<const int64_t> counts) {
  const std::vector<std::vector<int>> replicas =
      layer.LogicalToPhysical(static_cast<int>(counts.size()));
  std::vector<int64_t> slot_tokens(layer.num_slots(), 0);
  for (size_t e = 0; e < counts.size(); ++e) {
    const auto r = static_cast<int64_t>(replicas[e].size());
    for (int64_t i = 0; i < r; ++i) {
      slot_tokens[replicas[e][i]] = counts[e] / r + (i < counts[e] % r ? 1 : 0);
    }
  }
  return slot_tokens;
}

std::vector<int64_t> TokensPerGpu(const planner::LayerPlacement& layer,
                                  absl::Span<const int64_t> slot_tokens) {
  std::vector<int64_t> gpu_tokens(layer.slots_per_gpu.size(), 0);
  const std::vector<int> gpu_of_slot = layer.SlotGpus();
  for (size_t s = 0; s < slot_tokens.size(); ++s) gpu_tokens[gpu_of_slot[s]] += slot_tokens[s];
  return gpu_tokens;
}

double ModelledStep(const planner::LayerPlacement& layer, int num_experts,
                    absl::Span<const int64_t> counts) {
  return planner::LayerReplay(layer, num_experts).Replay(counts).max_gpu_load;
}

planner::LayerPlacement ContiguousPlacement(int num_experts, int num_gpus) {
  planner::LayerPlacement layer;
  layer.slots_per_gpu.assign(num_gpus, 0);
  for (int e = 0; e < num_experts; ++e) {
    ++layer.slots_per_gpu[static_cast<int64_t>(e) * num_gpus / num_experts];
    layer.phy2log.push_back(e);
  }
  return layer;
}

double Imbalance(const planner::LayerPlacement& layer, int num_experts,
                 absl::Span<const int64_t> counts) {
  const planner::LayerReplay::WindowLoad load =
      planner::LayerReplay(layer, num_experts).Replay(counts);
  const double mean = load.total / static_cast<double>(layer.slots_per_gpu.size());
  return mean > 0 ? load.max_gpu_load / mean : 1.0;
}

}  // namespace craft::gpu::bench
