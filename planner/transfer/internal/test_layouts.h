// Test-only: random valid layouts for the property tests of //planner/transfer.
#ifndef CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_LAYOUTS_H_
#define CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_LAYOUTS_H_

#include <random>
#include <vector>

#include "planner/cluster.h"
#include "planner/layout.h"

namespace craft::planner::transfer_internal {

// A one-layer layout, for hand-written cases.
Layout OneLayer(int num_experts, ClusterShape cluster, std::vector<int> slots_per_gpu,
                std::vector<int> phy2log);

// 2 to 8 GPUs on a random divisor of that many nodes.
ClusterShape RandomCluster(std::mt19937& rng);

// A layout that passes Validate(): per layer, random slot counts per GPU
// (some may be 0) and every expert placed at least once. With
// `duplicate_free` no GPU holds an expert twice in a layer.
Layout RandomLayout(std::mt19937& rng, const ClusterShape& cluster, int num_layers, int num_experts,
                    bool duplicate_free);

// A re-plan that mostly agrees with `base`: per layer the GPUs' slot lists
// are permuted among GPUs, a few slots get another expert (keeping the layout
// valid, and duplicate-free when `base` is), and each GPU's slots are
// shuffled.
Layout PerturbedLayout(std::mt19937& rng, const Layout& base);

}  // namespace craft::planner::transfer_internal

#endif  // CRAFT_PLANNER_TRANSFER_INTERNAL_TEST_LAYOUTS_H_
