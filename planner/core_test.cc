// Tests of the planner's basic types: traces, layouts, replay and replication.
#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/replay.h"
#include "planner/replicate.h"

namespace craft::planner {
namespace {

Layout TwoGpuLayout() {
  Layout layout;
  layout.num_experts = 3;
  layout.cluster = {2, 1};
  layout.layers.push_back({{2, 2}, {0, 1, 2, 0}});
  return layout;
}

TEST(LoadTraceTest, ReplayWindowsFallBackToAggregate) {
  LoadTrace trace(2, 3);
  trace.mutable_aggregate(1)[2] = 7;
  EXPECT_EQ(trace.num_replay_windows(), 1);
  EXPECT_EQ(trace.replay_window(0, 1)[2], 7);
  EXPECT_EQ(trace.LayerTotal(1), 7);
}

TEST(LoadTraceTest, SliceSumsItsWindows) {
  LoadTrace trace(1, 2, 3);
  for (int b = 0; b < 3; ++b) trace.mutable_window(b, 0)[0] = b + 1;
  const LoadTrace tail = trace.SliceWindows(1, 3);
  EXPECT_EQ(tail.num_windows(), 2);
  EXPECT_EQ(tail.aggregate(0)[0], 5);
}

// A negative shape or a slice outside the trace is a caller's bug: readers
// of outside data validate first (docs/error_policy.md).
TEST(LoadTraceDeathTest, ChecksShapeAndSlice) {
  EXPECT_DEATH(LoadTrace(2, -3), "check failed: .*: 2 layers, -3 experts, 0 windows");
  const LoadTrace trace(1, 2, 3);
  EXPECT_DEATH(trace.SliceWindows(2, 4), "check failed: .*: windows \\[2, 4\\) of 3");
}

TEST(LoadTraceTest, RejectsNegativeCounts) {
  LoadTrace trace(1, 2, 1);
  trace.mutable_window(0, 0)[1] = -1;
  EXPECT_EQ(trace.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadTrace(0, 2).Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LayoutTest, DerivesCountsAndInverse) {
  const Layout layout = TwoGpuLayout();
  ASSERT_TRUE(layout.Validate().ok());
  EXPECT_EQ(layout.layers[0].LogicalCounts(3), (std::vector<int>{2, 1, 1}));
  EXPECT_EQ(layout.layers[0].LogicalToPhysical(3)[0], (std::vector<int>{0, 3}));
  EXPECT_EQ(layout.layers[0].SlotOffset(1), 2);
  EXPECT_EQ(layout.layers[0].SlotOffsets(), (std::vector<int>{0, 2, 4}));
  const LayerPlacement uneven{{3, 0, 1}, {0, 1, 2, 0}};
  EXPECT_EQ(uneven.SlotOffsets(), (std::vector<int>{0, 3, 3, 4}));
  EXPECT_EQ(layout.TotalRedundantSlots(), 1);
  EXPECT_TRUE(layout.HasUniformSlots());
}

TEST(LayoutTest, ShapeIsLayersExpertsGpusAndNodes) {
  const Layout layout = TwoGpuLayout();
  const LayoutShape shape = layout.shape();
  EXPECT_EQ(shape, (LayoutShape{1, 3, 2, 1}));
  EXPECT_EQ(shape.ToString(), "1 layers x 3 experts on 2 GPUs / 1 nodes");
  Layout more_experts = layout;
  more_experts.num_experts = 4;
  EXPECT_NE(more_experts.shape(), shape) << "the slots alone do not make the shape";
  Layout more_layers = layout;
  more_layers.layers.push_back(layout.layers[0]);
  EXPECT_NE(more_layers.shape(), shape);
}

TEST(CheckLayoutShapeTest, SameShapeIsOk) {
  EXPECT_TRUE(
      CheckLayoutShape("layout", {12, 64, 8, 2}, "the configured shape", {12, 64, 8, 2}).ok());
}

TEST(CheckLayoutShapeTest, AnyDimensionDifferingIsRefusedNamingBoth) {
  const LayoutShape want{12, 64, 8, 2};
  for (const LayoutShape& got : {LayoutShape{11, 64, 8, 2}, LayoutShape{12, 63, 8, 2},
                                 LayoutShape{12, 64, 16, 2}, LayoutShape{12, 64, 8, 1}}) {
    const absl::Status status = CheckLayoutShape("layout 1.4", got, "this worker's", want);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << got.ToString();
    EXPECT_EQ(status.message(),
              "layout 1.4 has shape " + got.ToString() + "; this worker's is " + want.ToString());
  }
}

TEST(LayoutTest, RejectsBrokenLayouts) {
  Layout missing = TwoGpuLayout();
  missing.layers[0].phy2log = {0, 1, 0, 0};  // expert 2 unplaced
  EXPECT_FALSE(missing.Validate().ok());
  Layout out_of_range = TwoGpuLayout();
  out_of_range.layers[0].phy2log[1] = 9;
  EXPECT_FALSE(out_of_range.Validate().ok());
  Layout bad_sum = TwoGpuLayout();
  bad_sum.layers[0].slots_per_gpu = {3, 2};
  EXPECT_FALSE(bad_sum.Validate().ok());
  Layout duplicate = TwoGpuLayout();
  duplicate.layers[0].phy2log = {0, 0, 1, 2};
  EXPECT_TRUE(duplicate.Validate(/*allow_duplicates_on_gpu=*/true).ok());
  EXPECT_FALSE(duplicate.Validate(/*allow_duplicates_on_gpu=*/false).ok());
  // Refused without allocating anything the size of num_experts.
  Layout huge_experts = TwoGpuLayout();
  huge_experts.num_experts = 2147483647;
  EXPECT_EQ(huge_experts.Validate().message(), "layer 0: expert 3 has no replica");
}

TEST(ReplayTest, SplitsTokensEvenlyOverReplicas) {
  const Layout layout = TwoGpuLayout();
  LoadTrace trace(1, 3);
  trace.mutable_aggregate(0)[0] = 10;  // 5 on each GPU
  trace.mutable_aggregate(0)[1] = 4;   // GPU 0
  trace.mutable_aggregate(0)[2] = 2;   // GPU 1
  auto stats = EvaluateLayout(layout, trace);
  ASSERT_TRUE(stats.ok());
  EXPECT_DOUBLE_EQ(stats->layers[0].max_gpu_load, 9.0);
  EXPECT_DOUBLE_EQ(stats->mean_balancedness, 8.0 / 9.0);
  EXPECT_DOUBLE_EQ(stats->step_time, 9.0);
}

// More GPUs than slots: the empty GPU still counts in the mean.
TEST(ReplayTest, AGpuWithoutSlotsCountsAsIdle) {
  Layout layout;
  layout.num_experts = 2;
  layout.cluster = {3, 1};
  layout.layers.push_back({{1, 0, 1}, {0, 1}});
  LoadTrace trace(1, 2);
  trace.mutable_aggregate(0)[0] = 6;
  trace.mutable_aggregate(0)[1] = 3;
  auto stats = EvaluateLayout(layout, trace);
  ASSERT_TRUE(stats.ok());
  EXPECT_DOUBLE_EQ(stats->layers[0].max_gpu_load, 6.0);
  EXPECT_DOUBLE_EQ(stats->mean_balancedness, 3.0 / 6.0);
  std::vector<double> loads(3, -1);
  LayerReplay(layout.layers[0], 2).GpuLoads(trace.aggregate(0), absl::MakeSpan(loads));
  EXPECT_EQ(loads, (std::vector<double>{6, 0, 3}));
}

// Benefit curves replay all windows at once; it must give the per-window
// numbers exactly, or plans would depend on which path computed them.
TEST(ReplayTest, AllWindowsAtOnceEqualsWindowByWindowExactly) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const int experts = 2 + rng() % 9, gpus = 1 + rng() % 12, windows = 1 + rng() % 7;
    // Every expert once, then a few extra replicas, dealt to random GPUs
    // (some get none).
    LayerPlacement layer;
    for (int e = 0; e < experts; ++e) layer.phy2log.push_back(e);
    for (int extra = rng() % 5; extra > 0; --extra) layer.phy2log.push_back(rng() % experts);
    layer.slots_per_gpu.assign(gpus, 0);
    for (size_t p = 0; p < layer.phy2log.size(); ++p) ++layer.slots_per_gpu[rng() % gpus];
    LoadTrace trace(1, experts, windows);
    for (int b = 0; b < windows; ++b) {
      for (int e = 0; e < experts; ++e) trace.mutable_window(b, 0)[e] = rng() % 1000;
    }
    trace.SetAggregateFromWindows();
    const LayerReplay replay(layer, experts);
    const LayerStats at_once = replay.Replay(LayerWindows(trace, 0));
    LayerStats by_window{0, 0, 0};
    for (int b = 0; b < windows; ++b) {
      const LayerReplay::WindowLoad load = replay.Replay(trace.replay_window(b, 0));
      by_window.balancedness += load.max_gpu_load > 0 ? load.total / gpus / load.max_gpu_load : 1.0;
      by_window.max_gpu_load += load.max_gpu_load;
      by_window.mean_gpu_load += load.total / gpus;
    }
    EXPECT_EQ(at_once.balancedness, by_window.balancedness / windows) << trial;
    EXPECT_EQ(at_once.max_gpu_load, by_window.max_gpu_load / windows) << trial;
    EXPECT_EQ(at_once.mean_gpu_load, by_window.mean_gpu_load / windows) << trial;
  }
}

TEST(ReplayTest, IdleLayerIsBalancedAndShapesMustMatch) {
  EXPECT_DOUBLE_EQ(Balancedness(std::vector<double>{0, 0}), 1.0);
  EXPECT_FALSE(EvaluateLayout(TwoGpuLayout(), LoadTrace(2, 3)).ok());
}

TEST(ReplicateTest, GivesExtraSlotsToTheLargestPerReplicaLoad) {
  const std::vector<int64_t> weight = {40, 10, 30, 20};
  auto rep = ReplicateExperts(weight, 6);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->phy2log, (std::vector<int>{0, 1, 2, 3, 0, 2}));
  EXPECT_EQ(rep->rank, (std::vector<int>{0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(rep->logcnt, (std::vector<int>{2, 1, 2, 1}));
}

TEST(ReplicateTest, TiesGoToTheLowestIndexAndTheCapHolds) {
  const std::vector<int64_t> weight = {10, 10, 1};
  auto rep = ReplicateExperts(weight, 5, /*max_replicas_per_expert=*/2);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->logcnt, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(rep->phy2log[3], 0);
  EXPECT_FALSE(ReplicateExperts(weight, 2).ok());
  EXPECT_FALSE(ReplicateExperts(weight, 7, 2).ok());
}

TEST(ReplicateTest, GrowingOneReplicaAtATimeEqualsReplicatingAtOnce) {
  const std::vector<int64_t> weight = {90, 7, 33, 33, 0, 61, 12, 5};
  Replicator replicator(weight, /*max_replicas_per_expert=*/4);
  for (int physical : {8, 9, 10, 14, 20, 32}) {
    ASSERT_TRUE(replicator.GrowTo(physical).ok()) << physical;
    auto at_once = ReplicateExperts(weight, physical, 4);
    ASSERT_TRUE(at_once.ok());
    EXPECT_EQ(replicator.replication().phy2log, at_once->phy2log) << physical;
    EXPECT_EQ(replicator.replication().rank, at_once->rank) << physical;
    EXPECT_EQ(replicator.replication().logcnt, at_once->logcnt) << physical;
    // The packing order it keeps is the order a fresh sort gives.
    std::vector<int> sorted = {0, 1, 2, 3, 4, 5, 6, 7};
    std::sort(sorted.begin(), sorted.end(),
              [&](int a, int b) { return HeavierPerReplica(weight, at_once->logcnt, a, b); });
    EXPECT_EQ(replicator.replication().heaviest_first, sorted) << physical;
  }
  // Neither shrinking nor passing the cap (8 experts x 4) changes anything.
  EXPECT_FALSE(replicator.GrowTo(31).ok());
  EXPECT_FALSE(replicator.GrowTo(33).ok());
  EXPECT_EQ(replicator.replication().phy2log.size(), 32u);
}

TEST(InitialLayoutTest, ContiguousAndEqualPerGpu) {
  auto layout = ContiguousLayout(3, 10, ClusterShape{4, 2});
  ASSERT_TRUE(layout.ok());
  ASSERT_TRUE(layout->Validate(/*allow_duplicates_on_gpu=*/false).ok());
  for (const LayerPlacement& layer : layout->layers) {
    for (int e = 0; e < 10; ++e) EXPECT_EQ(layer.phy2log[e], e);
  }
  // 30 slots over 4 GPUs: totals within one of each other.
  for (int g = 0; g < 4; ++g) {
    EXPECT_GE(layout->SlotsOnGpu(g), 7);
    EXPECT_LE(layout->SlotsOnGpu(g), 8);
  }
  EXPECT_FALSE(ContiguousLayout(0, 10, ClusterShape{4, 2}).ok());
  EXPECT_FALSE(ContiguousLayout(3, 10, ClusterShape{4, 3}).ok());
}

}  // namespace
}  // namespace craft::planner
