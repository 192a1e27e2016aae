#include "planner/transfer/internal/test_layouts.h"

#include <algorithm>
#include <vector>

namespace craft::planner::transfer_internal {

Layout OneLayer(int num_experts, ClusterShape cluster, std::vector<int> slots_per_gpu,
                std::vector<int> phy2log) {
  Layout layout;
  layout.num_experts = num_experts;
  layout.cluster = cluster;
  layout.layers.push_back({std::move(slots_per_gpu), std::move(phy2log)});
  return layout;
}

namespace {

int Uniform(std::mt19937& rng, int low, int high) {
  return std::uniform_int_distribution<int>(low, high)(rng);
}

// Random slot counts per GPU, at most `cap` each, summing to at least E.
std::vector<int> RandomSlotCounts(std::mt19937& rng, int num_gpus, int num_experts, int cap) {
  std::vector<int> counts(num_gpus);
  for (int& count : counts) count = Uniform(rng, 0, cap);
  int total = 0;
  for (int count : counts) total += count;
  while (total < num_experts) {
    int& count = counts[Uniform(rng, 0, num_gpus - 1)];
    if (count < cap) ++count, ++total;
  }
  return counts;
}

bool Contains(const std::vector<int>& values, int value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

// Places every expert once on a GPU with room, then fills the remaining room
// with random experts (not already on that GPU when `duplicate_free`).
LayerPlacement RandomLayer(std::mt19937& rng, int num_gpus, int num_experts, bool duplicate_free) {
  const int cap = duplicate_free ? num_experts : num_experts + 2;
  const std::vector<int> counts =
      RandomSlotCounts(rng, num_gpus, num_experts, std::min(cap, num_experts / num_gpus + 3));
  std::vector<std::vector<int>> slots(num_gpus);
  for (int expert = 0; expert < num_experts; ++expert) {
    int gpu;
    do {
      gpu = Uniform(rng, 0, num_gpus - 1);
    } while (static_cast<int>(slots[gpu].size()) >= counts[gpu]);
    slots[gpu].push_back(expert);
  }
  LayerPlacement layer;
  layer.slots_per_gpu = counts;
  for (int gpu = 0; gpu < num_gpus; ++gpu) {
    while (static_cast<int>(slots[gpu].size()) < counts[gpu]) {
      const int expert = Uniform(rng, 0, num_experts - 1);
      if (!duplicate_free || !Contains(slots[gpu], expert)) slots[gpu].push_back(expert);
    }
    std::shuffle(slots[gpu].begin(), slots[gpu].end(), rng);
    layer.phy2log.insert(layer.phy2log.end(), slots[gpu].begin(), slots[gpu].end());
  }
  return layer;
}

// Splits a layer into per-GPU slot lists.
std::vector<std::vector<int>> SlotsByGpu(const LayerPlacement& layer) {
  std::vector<std::vector<int>> slots;
  int offset = 0;
  for (int count : layer.slots_per_gpu) {
    slots.emplace_back(layer.phy2log.begin() + offset, layer.phy2log.begin() + offset + count);
    offset += count;
  }
  return slots;
}

LayerPlacement JoinSlots(const std::vector<std::vector<int>>& slots) {
  LayerPlacement layer;
  for (const std::vector<int>& gpu_slots : slots) {
    layer.slots_per_gpu.push_back(static_cast<int>(gpu_slots.size()));
    layer.phy2log.insert(layer.phy2log.end(), gpu_slots.begin(), gpu_slots.end());
  }
  return layer;
}

}  // namespace

ClusterShape RandomCluster(std::mt19937& rng) {
  ClusterShape cluster;
  cluster.num_gpus = Uniform(rng, 2, 8);
  std::vector<int> divisors;
  for (int nodes = 1; nodes <= cluster.num_gpus; ++nodes) {
    if (cluster.num_gpus % nodes == 0) divisors.push_back(nodes);
  }
  cluster.num_nodes = divisors[Uniform(rng, 0, static_cast<int>(divisors.size()) - 1)];
  return cluster;
}

Layout RandomLayout(std::mt19937& rng, const ClusterShape& cluster, int num_layers, int num_experts,
                    bool duplicate_free) {
  Layout layout;
  layout.num_experts = num_experts;
  layout.cluster = cluster;
  for (int l = 0; l < num_layers; ++l) {
    layout.layers.push_back(RandomLayer(rng, cluster.num_gpus, num_experts, duplicate_free));
  }
  return layout;
}

Layout PerturbedLayout(std::mt19937& rng, const Layout& base) {
  const bool duplicate_free = base.Validate(/*allow_duplicates_on_gpu=*/false).ok();
  Layout layout = base;
  for (LayerPlacement& layer : layout.layers) {
    std::vector<std::vector<int>> slots = SlotsByGpu(layer);
    std::shuffle(slots.begin(), slots.end(), rng);
    layer = JoinSlots(slots);
    for (int edit = Uniform(rng, 0, 3); edit > 0 && layer.num_slots() > 0; --edit) {
      int& expert = layer.phy2log[Uniform(rng, 0, layer.num_slots() - 1)];
      const int old_expert = expert;
      expert = Uniform(rng, 0, base.num_experts - 1);
      if (!layout.Validate(/*allow_duplicates_on_gpu=*/!duplicate_free).ok()) expert = old_expert;
    }
    slots = SlotsByGpu(layer);
    for (std::vector<int>& gpu_slots : slots) std::shuffle(gpu_slots.begin(), gpu_slots.end(), rng);
    layer = JoinSlots(slots);
  }
  return layout;
}

}  // namespace craft::planner::transfer_internal
