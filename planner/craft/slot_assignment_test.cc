#include "planner/craft/slot_assignment.h"

#include <random>
#include <set>

#include "gtest/gtest.h"

namespace craft::planner {
namespace {

TEST(SlotAssignmentTest, EqualTotalsWhenTheSumDividesEvenly) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int nodes = 1 + rng() % 4;
    const ClusterShape cluster{nodes * static_cast<int>(1 + rng() % 8), nodes};
    std::vector<int> slots(1 + rng() % 12);
    int total = 0;
    for (int& n : slots) total += (n = static_cast<int>(rng() % 40));
    slots.back() += (cluster.num_gpus - total % cluster.num_gpus) % cluster.num_gpus;
    auto assigned = AssignSlots(slots, cluster);
    ASSERT_TRUE(assigned.ok());
    std::vector<int> per_gpu(cluster.num_gpus, 0);
    for (size_t l = 0; l < slots.size(); ++l) {
      int layer_total = 0;
      for (int g = 0; g < cluster.num_gpus; ++g) {
        layer_total += (*assigned)[l][g];
        per_gpu[g] += (*assigned)[l][g];
        // Within a layer no GPU gets more than one slot above another.
        EXPECT_LE((*assigned)[l][g], slots[l] / cluster.num_gpus + 1);
      }
      EXPECT_EQ(layer_total, slots[l]);
    }
    EXPECT_EQ(std::set<int>(per_gpu.begin(), per_gpu.end()).size(), 1u) << "trial " << trial;
  }
}

TEST(SlotAssignmentTest, ExtraSlotsSpreadAcrossNodes) {
  const ClusterShape cluster{8, 4};  // 2 GPUs per node
  auto assigned = AssignSlots({8 + 4}, cluster);
  ASSERT_TRUE(assigned.ok());
  std::set<int> nodes_with_extra;
  for (int g = 0; g < 8; ++g) {
    if ((*assigned)[0][g] == 2) nodes_with_extra.insert(cluster.NodeOf(g));
  }
  EXPECT_EQ(nodes_with_extra.size(), 4u);
}

TEST(SlotAssignmentTest, RejectsBadInput) {
  EXPECT_FALSE(AssignSlots({4}, ClusterShape{0, 1}).ok());
  EXPECT_FALSE(AssignSlots({4}, ClusterShape{6, 4}).ok());
  EXPECT_FALSE(AssignSlots({-1}, ClusterShape{2, 1}).ok());
}

}  // namespace
}  // namespace craft::planner
