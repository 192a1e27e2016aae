#include "planner/transfer/internal/layer_model.h"

#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace craft::planner::transfer_internal {
namespace {

// Every GPU's drop of one replica, scored together, must give Evaluate's
// numbers exactly: the re-plan's donor choice depends on them.
TEST(LayerModelTest, EvaluateDropsEqualsEvaluatingEachDrop) {
  std::mt19937 rng(23);
  for (int trial = 0; trial < 60; ++trial) {
    const int gpus = 1 + rng() % 12, experts = 2 + rng() % 7, windows = 1 + rng() % 6;
    // Every expert once, then extra replicas (duplicates on a GPU allowed),
    // dealt to random GPUs, some of which get none.
    std::vector<int> slots(experts);
    std::iota(slots.begin(), slots.end(), 0);
    for (int extra = rng() % 10; extra > 0; --extra) slots.push_back(rng() % experts);
    if (trial % 5 == 0) slots.insert(slots.end(), 3, 0);  // expert 0 piled up
    std::vector<std::vector<int>> on_gpu(gpus);
    for (int e : slots) on_gpu[trial % 7 == 0 ? 0 : rng() % gpus].push_back(e);
    LayerPlacement layer;
    for (const std::vector<int>& held : on_gpu) {
      layer.slots_per_gpu.push_back(static_cast<int>(held.size()));
      layer.phy2log.insert(layer.phy2log.end(), held.begin(), held.end());
    }
    LoadTrace trace(1, experts, windows);
    for (int b = 0; b < windows; ++b) {
      for (int e = 0; e < experts; ++e) trace.mutable_window(b, 0)[e] = rng() % 500;
    }
    trace.SetAggregateFromWindows();
    std::vector<int> sample(windows);
    std::iota(sample.begin(), sample.end(), 0);
    LayerModel model(trace, 0, sample, gpus);
    model.Reset(layer);
    for (int e = 0; e < experts; ++e) {
      const auto drops = model.EvaluateDrops(e);
      std::vector<int> holders = model.Holders(e);
      holders.erase(std::unique(holders.begin(), holders.end()), holders.end());
      ASSERT_EQ(drops.size(), holders.size()) << "trial " << trial << " expert " << e;
      for (size_t i = 0; i < drops.size(); ++i) {
        EXPECT_EQ(drops[i].first, holders[i]);
        const ReplicaChange drop[] = {{drops[i].first, e, -1}};
        const LayerDelta one = model.Evaluate(drop);
        EXPECT_EQ(drops[i].second.valid, one.valid) << "trial " << trial << " expert " << e;
        EXPECT_EQ(drops[i].second.balancedness, one.balancedness) << "trial " << trial;
        EXPECT_EQ(drops[i].second.max_gpu_load, one.max_gpu_load) << "trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace craft::planner::transfer_internal
