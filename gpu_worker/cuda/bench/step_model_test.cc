#include "gpu_worker/cuda/bench/step_model.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace craft::gpu::bench {
namespace {

TEST(StepModelTest, ScaleCountsKeepsProportionsAndTotal) {
  EXPECT_EQ(ScaleCounts({1, 1, 2}, 8), (std::vector<int64_t>{2, 2, 4}));
  const std::vector<int64_t> scaled = ScaleCounts({3, 3, 3}, 10);
  EXPECT_EQ(scaled, (std::vector<int64_t>{4, 3, 3}));  // the remainder to the lowest index
  EXPECT_EQ(ScaleCounts({0, 0}, 5), (std::vector<int64_t>{0, 0}));
}

TEST(StepModelTest, DispatchSplitsEveryExpertOverItsReplicas) {
  planner::LayerPlacement layer;
  layer.slots_per_gpu = {2, 2};
  layer.phy2log = {0, 1, 0, 2};  // expert 0 on both GPUs
  const std::vector<int64_t> counts = {7, 4, 1};
  const std::vector<int64_t> slots = DispatchToSlots(layer, counts);
  EXPECT_EQ(slots, (std::vector<int64_t>{4, 4, 3, 1}));
  EXPECT_EQ(TokensPerGpu(layer, slots), (std::vector<int64_t>{8, 4}));
  // The planner splits evenly in floating point: max(3.5 + 4, 3.5 + 1).
  EXPECT_DOUBLE_EQ(ModelledStep(layer, 3, counts), 7.5);
  EXPECT_DOUBLE_EQ(Imbalance(layer, 3, counts), 7.5 / 6);
}

TEST(StepModelTest, ContiguousPlacementGivesEachGpuAnEqualRun) {
  const planner::LayerPlacement layer = ContiguousPlacement(8, 4);
  EXPECT_EQ(layer.slots_per_gpu, (std::vector<int>{2, 2, 2, 2}));
  EXPECT_EQ(layer.phy2log, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_DOUBLE_EQ(Imbalance(layer, 8, std::vector<int64_t>{4, 4, 0, 0, 0, 0, 0, 0}), 4.0);
}

}  // namespace
}  // namespace craft::gpu::bench
