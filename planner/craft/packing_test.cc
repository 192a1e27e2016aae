#include "planner/craft/packing.h"

#include <random>
#include <set>

#include "gtest/gtest.h"
#include "planner/craft/benefit.h"
#include "planner/replay.h"

namespace craft::planner {
namespace {

TEST(PackingTest, HotExpertReplicasGoToDifferentNodes) {
  const std::vector<int64_t> weight = {800, 10, 10, 10, 10, 10, 10, 10};
  const ClusterShape cluster{4, 2};
  auto placement = PlaceLayer(weight, 4, {3, 3, 3, 3}, cluster, {});
  ASSERT_TRUE(placement.ok());
  const std::vector<int> gpus = placement->SlotGpus();
  std::set<int> hot_gpus;
  for (int p = 0; p < placement->num_slots(); ++p) {
    if (placement->phy2log[p] == 0) hot_gpus.insert(gpus[p]);
  }
  EXPECT_EQ(hot_gpus.size(), 4u);  // 5 replicas capped at... 4 GPUs, one each
  std::vector<double> loads(4);
  LayerReplay(*placement, 8).GpuLoads(weight, absl::MakeSpan(loads));
  EXPECT_GT(Balancedness(loads), 0.9);
}

TEST(PackingTest, SwapsToAvoidDuplicatesWhenGreedyGetsStuck) {
  // Expert 0 has two replicas; GPU 1 fills first with light experts in this
  // slot split, leaving only GPU 0 free for 0's second replica unless a swap.
  const std::vector<int64_t> weight = {10, 9, 9, 9};
  Replication replication{{0, 1, 2, 3, 0}, {0, 0, 0, 0, 1}, {2, 1, 1, 1}, {}};
  const ClusterShape cluster{2, 1};
  for (const std::vector<int>& slots : {std::vector<int>{4, 1}, std::vector<int>{3, 2}}) {
    auto placement = PackLayer(weight, replication, slots, cluster, {true});
    if (slots[1] == 1) {
      // GPU 1 has one slot; expert 0 needs two GPUs: feasible only with 0 on GPU 1.
      ASSERT_TRUE(placement.ok()) << placement.status();
    } else {
      ASSERT_TRUE(placement.ok()) << placement.status();
    }
    Layout layout{4, cluster, {*placement}};
    EXPECT_TRUE(layout.Validate(/*allow_duplicates_on_gpu=*/false).ok());
  }
}

TEST(PackingTest, ImpossibleWithoutDuplicatesIsAClearError) {
  const std::vector<int64_t> weight = {10, 1};
  Replication replication{{0, 1, 0, 0}, {0, 0, 1, 2}, {3, 1}, {}};
  auto placement = PackLayer(weight, replication, {2, 2}, ClusterShape{2, 1}, {true});
  EXPECT_EQ(placement.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PackingTest, RandomLayersAreCompleteAndDuplicateFree) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const int nodes = 1 + rng() % 3;
    const ClusterShape cluster{nodes * static_cast<int>(1 + rng() % 4), nodes};
    const int experts = 1 + rng() % 24;
    const int redundant = static_cast<int>(rng() % (experts * (cluster.num_gpus - 1) + 1));
    std::vector<int64_t> weight(experts);
    for (auto& w : weight) w = rng() % 5 == 0 ? 0 : static_cast<int64_t>(rng() % 1000);
    std::vector<int> slots(cluster.num_gpus, (experts + redundant) / cluster.num_gpus);
    for (int i = 0; i < (experts + redundant) % cluster.num_gpus; ++i) ++slots[i];
    const bool forbid = trial % 2 == 0;
    auto placement = PlaceLayer(weight, redundant, slots, cluster, {forbid});
    if (!placement.ok()) {
      // Only the duplicate ban may make a layer infeasible.
      EXPECT_TRUE(forbid) << placement.status();
      EXPECT_EQ(placement.status().code(), absl::StatusCode::kFailedPrecondition);
      continue;
    }
    Layout layout{experts, cluster, {*placement}};
    EXPECT_TRUE(layout.Validate(!forbid).ok()) << "trial " << trial;
    EXPECT_EQ(placement->slots_per_gpu, slots);
    EXPECT_EQ(placement->num_slots(), experts + redundant);
    // Deterministic.
    auto again = PlaceLayer(weight, redundant, slots, cluster, {forbid});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *placement);
  }
}

}  // namespace
}  // namespace craft::planner
