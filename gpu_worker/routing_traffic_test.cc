#include <cstdint>
#include <set>
#include <vector>

#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/routing.h"
#include "gpu_worker/test_util.h"
#include "gpu_worker/traffic.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "planner/load_trace.h"

namespace craft::gpu_worker {
namespace {

// 3 GPUs, 2 layers of 6 experts; expert 0 of layer 0 has three replicas and
// expert 5 of layer 1 two.
planner::Layout ReplicatedLayout() {
  planner::Layout layout;
  layout.num_experts = 6;
  layout.cluster = {3, 1};
  layout.layers.push_back({{3, 3, 2}, {0, 1, 2, 0, 3, 4, 0, 5}});
  layout.layers.push_back({{3, 2, 3}, {0, 1, 5, 2, 3, 4, 5, 1}});
  EXPECT_TRUE(layout.Validate().ok());
  return layout;
}

TrafficGenerator MakeTraffic(Popularity popularity, int tokens, int top_k, uint64_t seed = 7) {
  TrafficOptions options;
  options.tokens_per_window = tokens;
  options.top_k = top_k;
  options.seed = seed;
  absl::StatusOr<TrafficGenerator> traffic = TrafficGenerator::Create(options, popularity);
  EXPECT_TRUE(traffic.ok()) << traffic.status();
  return *std::move(traffic);
}

Popularity Uniform(int layers, int experts) {
  return *Popularity::Synthetic(layers, experts, /*top_k=*/1, /*skew=*/1, /*seed=*/1);
}

TEST(RoutingTableTest, RoutesToAReplicaOfTheExpertDeterministically) {
  const planner::Layout layout = ReplicatedLayout();
  const RoutingTable table(layout);
  EXPECT_EQ(table.Replicas(0, 0).size(), 3u);
  for (int l = 0; l < 2; ++l) {
    for (int e = 0; e < 6; ++e) {
      for (int token = 0; token < 50; ++token) {
        const int slot = table.Route(l, e, /*window_id=*/9, token, /*k=*/1);
        EXPECT_EQ(layout.layers[l].phy2log[slot], e);
        EXPECT_EQ(slot, RoutingTable(layout).Route(l, e, 9, token, 1));
      }
    }
  }
}

TEST(RoutingTableTest, SpreadsAnExpertsTokensOverItsReplicas) {
  const RoutingTable table(ReplicatedLayout());
  std::vector<int> hits(8, 0);
  constexpr int kTokens = 3000;
  for (int token = 0; token < kTokens; ++token) ++hits[table.Route(0, 0, 123, token, 0)];
  for (int slot : {0, 3, 6}) {
    EXPECT_NEAR(hits[slot], kTokens / 3, kTokens / 15) << "slot " << slot;
  }
  // Another window routes the same token elsewhere some of the time.
  int moved = 0;
  for (int token = 0; token < 300; ++token) {
    moved += table.Route(0, 0, 123, token, 0) != table.Route(0, 0, 124, token, 0);
  }
  EXPECT_GT(moved, 100);
}

TEST(TrafficTest, EveryTokenPicksTopKDistinctExperts) {
  const TrafficGenerator traffic = MakeTraffic(Uniform(2, 6), /*tokens=*/200, /*top_k=*/4);
  const std::vector<int> experts = traffic.SampleExperts(5, 1);
  ASSERT_EQ(experts.size(), 800u);
  for (int t = 0; t < 200; ++t) {
    const std::set<int> distinct(experts.begin() + 4 * t, experts.begin() + 4 * t + 4);
    EXPECT_EQ(distinct.size(), 4u);
    for (int e : distinct) EXPECT_TRUE(e >= 0 && e < 6);
  }
}

TEST(TrafficTest, TokensDependOnlyOnSeedWindowAndLayer) {
  const TrafficGenerator a = MakeTraffic(Uniform(2, 6), 100, 2, /*seed=*/7);
  const TrafficGenerator b = MakeTraffic(Uniform(2, 6), 100, 2, /*seed=*/7);
  const TrafficGenerator other_seed = MakeTraffic(Uniform(2, 6), 100, 2, /*seed=*/8);
  EXPECT_EQ(a.SampleExperts(42, 0), b.SampleExperts(42, 0));
  EXPECT_NE(a.SampleExperts(42, 0), a.SampleExperts(43, 0));
  EXPECT_NE(a.SampleExperts(42, 0), a.SampleExperts(42, 1));
  EXPECT_NE(a.SampleExperts(42, 0), other_seed.SampleExperts(42, 0));
}

TEST(TrafficTest, ReceiveSideCountsOverAllGpusSumToTokensTimesTopK) {
  const planner::Layout layout = ReplicatedLayout();
  const RoutingTable routing(layout);
  const TrafficGenerator traffic =
      MakeTraffic(*Popularity::Synthetic(2, 6, 3, /*skew=*/2, /*seed=*/3), 500, 3);
  CpuLoadCounter counter;
  std::vector<int64_t> per_layer(2, 0);
  for (int gpu = 0; gpu < 3; ++gpu) {
    const LocalLayout mine = LocalLayout::Of(layout, "1.1", gpu);
    const auto counts = traffic.CountWindow(77, routing, mine, &counter);
    ASSERT_TRUE(counts.ok()) << counts.status();
    ASSERT_EQ(counts->size(), 2u);
    for (int l = 0; l < 2; ++l) {
      ASSERT_EQ((*counts)[l].size(), static_cast<size_t>(layout.layers[l].slots_per_gpu[gpu]));
      for (int64_t c : (*counts)[l]) per_layer[l] += c;
    }
  }
  EXPECT_EQ(per_layer, (std::vector<int64_t>{1500, 1500}));
}

TEST(TrafficTest, CountWindowRefusesAnotherShape) {
  const planner::Layout layout = testing::InitialTwoGpuLayout();  // 2 layers
  const TrafficGenerator traffic = MakeTraffic(Uniform(3, 4), 10, 1);
  CpuLoadCounter counter;
  EXPECT_FALSE(
      traffic.CountWindow(1, RoutingTable(layout), LocalLayout::Of(layout, "0.0", 0), &counter)
          .ok());
}

TEST(TrafficTest, FollowsTheTracesPopularityAndCyclesItsWindows) {
  planner::LoadTrace trace(/*num_layers=*/1, /*num_experts=*/4, /*num_windows=*/2);
  trace.mutable_window(0, 0)[0] = 1000;  // window 0: expert 0 only
  trace.mutable_window(1, 0)[3] = 1000;  // window 1: expert 3 only
  trace.SetAggregateFromWindows();
  const TrafficGenerator traffic =
      MakeTraffic(*Popularity::FromTrace(trace), /*tokens=*/50, /*top_k=*/2);
  for (int64_t window : {0, 1, 2, 3, 1000}) {
    const int hot = window % 2 == 0 ? 0 : 3;
    const std::vector<int> experts = traffic.SampleExperts(window, 0);
    for (size_t i = 0; i < experts.size(); i += 2) {
      // The only weighted expert comes first; the second pick falls back to
      // the zero-weight experts, uniformly.
      EXPECT_EQ(experts[i], hot);
      EXPECT_NE(experts[i + 1], hot);
    }
  }
}

TEST(PopularityTest, SyntheticSkewIsCappedAndUniformAtOne) {
  // 16 experts, top 4: a hot expert can take at most 4x the mean.
  EXPECT_TRUE(Popularity::Synthetic(3, 16, 4, /*skew=*/30, 1).ok());
  const Popularity uniform = *Popularity::Synthetic(3, 16, 4, /*skew=*/1, 1);
  for (int64_t w : uniform.Weights(12345, 2)) EXPECT_EQ(w, 1);
  const Popularity skewed = *Popularity::Synthetic(8, 16, 2, /*skew=*/8, 1);
  int64_t max_weight = 0;
  int64_t total = 0;
  for (int l = 0; l < 8; ++l) {
    for (int64_t w : skewed.Weights(0, l)) {
      max_weight = std::max(max_weight, w);
      total += w;
    }
  }
  EXPECT_GT(max_weight * 16 * 8, 3 * total);  // some expert well above the mean
}

TEST(PopularityTest, RefusesBadTracesAndOptions) {
  planner::LoadTrace negative(1, 4);
  negative.mutable_aggregate(0)[1] = -1;
  EXPECT_FALSE(Popularity::FromTrace(negative).ok());
  TrafficOptions options;
  options.top_k = 5;
  EXPECT_FALSE(TrafficGenerator::Create(options, Uniform(1, 4)).ok());
  options.top_k = 1;
  options.tokens_per_window = 0;
  EXPECT_FALSE(TrafficGenerator::Create(options, Uniform(1, 4)).ok());
}

}  // namespace
}  // namespace craft::gpu_worker
