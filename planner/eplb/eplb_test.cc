// Tests of the DeepSeek EPLB port: the worked examples of the reference
// description (A-D), upstream's asserts as errors, and randomized invariants.
#include "planner/eplb/eplb.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "planner/replay.h"
#include "planner/replicate.h"

namespace craft::planner {
namespace {

using ::testing::TestWithParam;

// The README's weights, shared by examples A and B.
const std::vector<std::vector<int64_t>> kReadmeWeight = {
    {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
    {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};

LoadTrace MakeTrace(const std::vector<std::vector<int64_t>>& weight) {
  LoadTrace trace(static_cast<int>(weight.size()), static_cast<int>(weight[0].size()));
  for (int l = 0; l < trace.num_layers(); ++l) {
    std::copy(weight[l].begin(), weight[l].end(), trace.mutable_aggregate(l).begin());
  }
  return trace;
}

// Every GPU's load in `layer` when tokens split evenly over replicas.
std::vector<double> GpuLoads(const Layout& layout, const LoadTrace& trace, int layer) {
  const LayerReplay replay(layout.layers[layer], layout.num_experts);
  std::vector<double> loads(replay.num_gpus());
  replay.GpuLoads(trace.aggregate(layer), absl::MakeSpan(loads));
  return loads;
}

void ExpectLoadsNear(const std::vector<double>& actual, const std::vector<double>& expected,
                     double tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t g = 0; g < actual.size(); ++g) {
    EXPECT_NEAR(actual[g], expected[g], tolerance) << "GPU " << g;
  }
}

TEST(EplbExampleTest, AReadmeHierarchical) {
  const LoadTrace trace = MakeTrace(kReadmeWeight);
  auto result = RebalanceExperts(trace, 16, 4, 2, 8);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->phy2log,
            (std::vector<std::vector<int>>{{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                           {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}}));
  EXPECT_EQ(result->logcnt, (std::vector<std::vector<int>>{{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1},
                                                           {1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}}));
  EXPECT_EQ(result->log2phy, (std::vector<std::vector<std::vector<int>>>{{{12, -1},
                                                                          {15, 13},
                                                                          {11, -1},
                                                                          {6, -1},
                                                                          {7, 5},
                                                                          {0, 2},
                                                                          {1, -1},
                                                                          {3, -1},
                                                                          {4, -1},
                                                                          {9, -1},
                                                                          {8, 10},
                                                                          {14, -1}},
                                                                         {{13, -1},
                                                                          {15, 11},
                                                                          {8, -1},
                                                                          {14, -1},
                                                                          {9, -1},
                                                                          {10, 12},
                                                                          {2, 4},
                                                                          {0, -1},
                                                                          {6, 3},
                                                                          {7, -1},
                                                                          {1, -1},
                                                                          {5, -1}}}));

  auto layout = PlanEplb(trace, 16, 4, ClusterShape{8, 2});
  ASSERT_TRUE(layout.ok()) << layout.status();
  ExpectLoadsNear(GpuLoads(*layout, trace, 0), {121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152},
                  1e-9);
  ExpectLoadsNear(GpuLoads(*layout, trace, 1), {173, 179.5, 120.5, 172, 123, 152, 118.5, 117.5},
                  1e-9);
  EXPECT_NEAR(Balancedness(GpuLoads(*layout, trace, 0)), 0.8277, 1e-4);
  EXPECT_NEAR(Balancedness(GpuLoads(*layout, trace, 1)), 0.8050, 1e-4);
}

TEST(EplbExampleTest, BGlobalPolicyWhenGroupsDoNotSplitOverNodes) {
  const LoadTrace trace = MakeTrace(kReadmeWeight);
  const std::vector<std::vector<int>> expected_phy2log = {
      {10, 6, 10, 7, 0, 2, 11, 4, 5, 9, 5, 4, 8, 3, 1, 1},
      {1, 10, 2, 4, 5, 11, 5, 0, 6, 7, 6, 3, 8, 8, 9, 7}};
  const std::vector<std::vector<int>> expected_logcnt = {{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1},
                                                         {1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1}};
  // 4 % 3 != 0 selects the global policy, which also skips 8 % 3 != 0; one
  // node runs the hierarchical code with a single node, to the same result.
  for (int num_nodes : {3, 1}) {
    SCOPED_TRACE(num_nodes);
    auto result = RebalanceExperts(trace, 16, 4, num_nodes, 8);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->phy2log, expected_phy2log);
    EXPECT_EQ(result->logcnt, expected_logcnt);
  }
  auto layout = PlanEplb(trace, 16, 4, ClusterShape{8, 1});
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_NEAR(Balancedness(GpuLoads(*layout, trace, 0)), 0.9323, 1e-4);
  EXPECT_NEAR(Balancedness(GpuLoads(*layout, trace, 1)), 0.8401, 1e-4);
}

TEST(EplbExampleTest, CHotExpertIsLockedInItsNode) {
  const LoadTrace trace = MakeTrace({{100, 1, 1, 1, 1, 1, 1, 1}});
  auto result = RebalanceExperts(trace, 12, 4, 2, 4);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->phy2log, (std::vector<std::vector<int>>{{0, 0, 7, 0, 1, 6, 4, 2, 2, 5, 3, 3}}));
  EXPECT_EQ(result->logcnt, (std::vector<std::vector<int>>{{3, 1, 2, 2, 1, 1, 1, 1}}));
  auto layout = PlanEplb(trace, 12, 4, ClusterShape{4, 2});
  ASSERT_TRUE(layout.ok()) << layout.status();
  ExpectLoadsNear(GpuLoads(*layout, trace, 0), {203.0 / 3, 106.0 / 3, 2, 2}, 1e-9);
  // Two replicas of expert 0 share GPU 0, as upstream allows.
  EXPECT_FALSE(layout->Validate(/*allow_duplicates_on_gpu=*/false).ok());
}

TEST(EplbExampleTest, DTinyWithoutTies) {
  const LoadTrace trace = MakeTrace({{40, 10, 30, 20}});
  for (int num_nodes : {1, 2}) {
    SCOPED_TRACE(num_nodes);
    auto result = RebalanceExperts(trace, 6, 2, num_nodes, 2);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->phy2log, (std::vector<std::vector<int>>{{0, 0, 1, 3, 2, 2}}));
    EXPECT_EQ(result->logcnt, (std::vector<std::vector<int>>{{2, 1, 2, 1}}));
    EXPECT_EQ(result->log2phy,
              (std::vector<std::vector<std::vector<int>>>{{{0, 1}, {2, -1}, {4, 5}, {3, -1}}}));
    auto layout = PlanEplb(trace, 6, 2, ClusterShape{2, num_nodes});
    ASSERT_TRUE(layout.ok()) << layout.status();
    ExpectLoadsNear(GpuLoads(*layout, trace, 0), {50, 50}, 1e-9);
  }
}

struct InvalidCase {
  const char* name;
  LoadTrace trace;
  int num_replicas;
  int num_groups;
  int num_nodes;
  int num_gpus;
};

LoadTrace TraceWithNegativeCount() {
  LoadTrace trace(1, 4);
  trace.mutable_aggregate(0)[2] = -1;
  return trace;
}

class EplbInvalidTest : public TestWithParam<InvalidCase> {};

TEST_P(EplbInvalidTest, ReturnsInvalidArgument) {
  const InvalidCase& c = GetParam();
  const auto result =
      RebalanceExperts(c.trace, c.num_replicas, c.num_groups, c.num_nodes, c.num_gpus);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
}

INSTANTIATE_TEST_SUITE_P(
    Constraints, EplbInvalidTest,
    testing::Values(InvalidCase{"FewerSlotsThanExperts", LoadTrace(1, 4), 3, 1, 1, 1},
                    InvalidCase{"SlotsNotDivisibleByGpus", LoadTrace(1, 4), 6, 1, 1, 4},
                    InvalidCase{"ExpertsNotDivisibleByGroups", LoadTrace(1, 4), 4, 3, 1, 1},
                    InvalidCase{"GpusNotDivisibleByNodes", LoadTrace(1, 4), 6, 2, 2, 3},
                    InvalidCase{"ZeroReplicas", LoadTrace(1, 4), 0, 1, 1, 1},
                    InvalidCase{"NegativeReplicas", LoadTrace(1, 4), -4, 1, 1, 1},
                    InvalidCase{"ZeroGroups", LoadTrace(1, 4), 4, 0, 1, 1},
                    InvalidCase{"NegativeGroups", LoadTrace(1, 4), 4, -2, 1, 1},
                    InvalidCase{"ZeroNodes", LoadTrace(1, 4), 4, 1, 0, 1},
                    InvalidCase{"NegativeNodes", LoadTrace(1, 4), 4, 1, -1, 1},
                    InvalidCase{"ZeroGpus", LoadTrace(1, 4), 4, 1, 1, 0},
                    InvalidCase{"NegativeGpus", LoadTrace(1, 4), 4, 1, 1, -2},
                    InvalidCase{"EmptyTrace", LoadTrace(), 4, 1, 1, 1},
                    InvalidCase{"NoLayers", LoadTrace(0, 4), 4, 1, 1, 1},
                    InvalidCase{"NoExperts", LoadTrace(1, 0), 4, 1, 1, 1},
                    InvalidCase{"NegativeCount", TraceWithNegativeCount(), 4, 1, 1, 1}),
    [](const testing::TestParamInfo<InvalidCase>& info) { return info.param.name; });

TEST(EplbPlanTest, RejectsAClusterThatSplitsGpusUnevenly) {
  // RebalanceExperts accepts this shape (global policy), a Layout cannot.
  const LoadTrace trace = MakeTrace(kReadmeWeight);
  EXPECT_TRUE(RebalanceExperts(trace, 16, 4, 3, 8).ok());
  EXPECT_EQ(PlanEplb(trace, 16, 4, ClusterShape{8, 3}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A random problem that satisfies every constraint.
struct RandomCase {
  LoadTrace trace;
  int num_replicas;
  int num_groups;
  int num_nodes;
  int num_gpus;

  bool hierarchical() const { return num_groups % num_nodes == 0; }
};

int Uniform(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// Mostly small counts so that ties are frequent, with zeros and a few large
// counts mixed in.
int64_t RandomCount(std::mt19937& rng) {
  switch (Uniform(rng, 0, 4)) {
    case 0:
      return 0;
    case 1:
      return Uniform(rng, 0, 1'000'000'000);
    default:
      return Uniform(rng, 1, 6);
  }
}

RandomCase MakeRandomCase(std::mt19937& rng) {
  RandomCase c;
  c.num_nodes = Uniform(rng, 1, 3);
  c.num_gpus = c.num_nodes * Uniform(rng, 1, 3);
  c.num_groups = Uniform(rng, 1, 6);
  const int num_experts = c.num_groups * Uniform(rng, 1, 4);
  const int min_per_gpu = (num_experts + c.num_gpus - 1) / c.num_gpus;
  c.num_replicas = c.num_gpus * (min_per_gpu + Uniform(rng, 0, 3));
  c.trace = LoadTrace(Uniform(rng, 1, 4), num_experts);
  for (int l = 0; l < c.trace.num_layers(); ++l) {
    for (int64_t& count : c.trace.mutable_aggregate(l)) count = RandomCount(rng);
  }
  return c;
}

// phy2log, log2phy and logcnt describe the same placement of P slots.
void ExpectConsistent(const EplbResult& result, int num_experts, int num_replicas) {
  int max_count = 0;
  for (const std::vector<int>& logcnt : result.logcnt) {
    max_count = std::max(max_count, *std::max_element(logcnt.begin(), logcnt.end()));
  }
  for (size_t l = 0; l < result.phy2log.size(); ++l) {
    const std::vector<int>& phy2log = result.phy2log[l];
    const std::vector<int>& logcnt = result.logcnt[l];
    ASSERT_EQ(static_cast<int>(phy2log.size()), num_replicas);
    ASSERT_EQ(static_cast<int>(logcnt.size()), num_experts);
    int total = 0;
    std::set<int> slots_seen;
    for (int e = 0; e < num_experts; ++e) {
      EXPECT_GE(logcnt[e], 1) << "expert " << e;
      total += logcnt[e];
      const std::vector<int>& slots = result.log2phy[l][e];
      ASSERT_EQ(static_cast<int>(slots.size()), max_count);
      for (int r = 0; r < max_count; ++r) {
        if (r >= logcnt[e]) {
          EXPECT_EQ(slots[r], -1);
          continue;
        }
        ASSERT_GE(slots[r], 0);
        ASSERT_LT(slots[r], num_replicas);
        EXPECT_EQ(phy2log[slots[r]], e);
        EXPECT_TRUE(slots_seen.insert(slots[r]).second) << "slot " << slots[r] << " listed twice";
      }
    }
    EXPECT_EQ(total, num_replicas);
    EXPECT_EQ(static_cast<int>(slots_seen.size()), num_replicas);
  }
}

// Hierarchical placement never splits a group over nodes, and every node
// hosts the same number of groups.
void ExpectGroupsLockedToNodes(const RandomCase& c, const EplbResult& result) {
  const int group_size = c.trace.num_experts() / c.num_groups;
  const int slots_per_node = c.num_replicas / c.num_nodes;
  for (const std::vector<int>& phy2log : result.phy2log) {
    std::vector<std::set<int>> group_nodes(c.num_groups);
    for (int p = 0; p < c.num_replicas; ++p) {
      group_nodes[phy2log[p] / group_size].insert(p / slots_per_node);
    }
    std::vector<int> groups_on_node(c.num_nodes, 0);
    for (const std::set<int>& nodes : group_nodes) {
      ASSERT_EQ(nodes.size(), 1u);
      ++groups_on_node[*nodes.begin()];
    }
    for (int count : groups_on_node) EXPECT_EQ(count, c.num_groups / c.num_nodes);
  }
}

TEST(EplbPropertyTest, RandomProblemsKeepTheInvariants) {
  for (int seed = 0; seed < 200; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    const RandomCase c = MakeRandomCase(rng);
    const int num_experts = c.trace.num_experts();
    auto result = RebalanceExperts(c.trace, c.num_replicas, c.num_groups, c.num_nodes, c.num_gpus);
    ASSERT_TRUE(result.ok()) << result.status();
    ExpectConsistent(*result, num_experts, c.num_replicas);

    auto again = RebalanceExperts(c.trace, c.num_replicas, c.num_groups, c.num_nodes, c.num_gpus);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->phy2log, result->phy2log);
    EXPECT_EQ(again->log2phy, result->log2phy);
    EXPECT_EQ(again->logcnt, result->logcnt);

    if (c.hierarchical()) {
      ExpectGroupsLockedToNodes(c, *result);
    } else {
      // One node: replica counts are plain EPLB replication of the layer.
      for (int l = 0; l < c.trace.num_layers(); ++l) {
        auto rep = ReplicateExperts(c.trace.aggregate(l), c.num_replicas);
        ASSERT_TRUE(rep.ok());
        EXPECT_EQ(result->logcnt[l], rep->logcnt);
      }
    }

    auto layout =
        PlanEplb(c.trace, c.num_replicas, c.num_groups, ClusterShape{c.num_gpus, c.num_nodes});
    ASSERT_TRUE(layout.ok()) << layout.status();
    EXPECT_TRUE(layout->Validate().ok()) << layout->Validate();
    EXPECT_TRUE(layout->HasUniformSlots());
    for (int l = 0; l < c.trace.num_layers(); ++l) {
      EXPECT_EQ(layout->layers[l].phy2log, result->phy2log[l]);
      EXPECT_EQ(layout->layers[l].LogicalCounts(num_experts), result->logcnt[l]);
      // Every token lands on exactly one GPU.
      const std::vector<double> loads = GpuLoads(*layout, c.trace, l);
      double sum = 0.0;
      for (double load : loads) sum += load;
      const double total = static_cast<double>(c.trace.LayerTotal(l));
      EXPECT_NEAR(sum, total, 1e-9 * std::max(1.0, total));
    }
  }
}

}  // namespace
}  // namespace craft::planner
