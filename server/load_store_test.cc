#include "server/load_store.h"

#include <limits>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "server/internal/test_support.h"

namespace craft::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::SkewedLoads;
using testing::Window;

class LoadStoreTest : public ::testing::Test {
 protected:
  LoadStoreTest() : history_(4) {
    initial_ = *planner::ContiguousLayout(2, 4, {4, 2});
    history_.AddCommitted("0.0", std::make_shared<const planner::Layout>(initial_));
    replicated_ = testing::ReplicatedLayout();
    history_.Add("1.1", std::make_shared<const planner::Layout>(replicated_));
  }

  LoadStore MakeStore(int horizon = 8, std::optional<double> decay = std::nullopt) {
    return LoadStore(LoadStoreOptions{2, 4, {4, 2}, horizon, decay}, &history_);
  }

  // Every GPU reports window `id` under `version`.
  void ReportAll(LoadStore& store, const planner::Layout& layout, const std::string& version,
                 int64_t id, const std::vector<std::vector<int64_t>>& loads) {
    for (int gpu = 0; gpu < 4; ++gpu) {
      ASSERT_TRUE(store.Ingest(Window(layout, version, gpu, id, loads)).ok());
    }
  }

  // Ingests `window`, expecting a rejection for `reason` that leaves the store as it was.
  void ExpectRejected(LoadStore& store, const craft::v1::GpuWindow& window, RejectReason reason,
                      absl::Span<const int> node_gpus = {}) {
    const int64_t ingested = store.windows_ingested();
    const int64_t before = store.rejected(reason);
    absl::Status status = store.Ingest(window, node_gpus);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(RejectReasonName(reason)));
    EXPECT_EQ(store.rejected(reason), before + 1);
    EXPECT_EQ(store.windows_ingested(), ingested);
  }

  LayoutHistory history_;
  planner::Layout initial_;
  planner::Layout replicated_;
};

TEST_F(LoadStoreTest, PooledTraceConcatenatesAFamilysWindowsAndSumsTheirAggregates) {
  LoadStore own = MakeStore();
  LoadStore peer = MakeStore();
  LoadStore idle = MakeStore();  // a member without windows adds none
  ReportAll(own, initial_, "0.0", 1, SkewedLoads());
  ReportAll(peer, initial_, "0.0", 1, SkewedLoads());
  ReportAll(peer, initial_, "0.0", 2, SkewedLoads());
  const planner::LoadTrace alone = PooledTrace(own, {});
  EXPECT_EQ(alone.num_windows(), 1);
  const planner::LoadTrace pooled = PooledTrace(own, {&peer, &idle});
  ASSERT_EQ(pooled.num_windows(), 3);
  for (int w = 0; w < 3; ++w) {
    EXPECT_THAT(pooled.window(w, 0), ElementsAre(4000, 100, 100, 100));
  }
  EXPECT_THAT(pooled.aggregate(0), ElementsAre(12000, 300, 300, 300));
  EXPECT_THAT(PooledTrace(idle, {&own}).aggregate(1), ElementsAre(100, 4000, 100, 100));
}

TEST_F(LoadStoreTest, SumsGpusOfAWindowIntoLogicalExperts) {
  LoadStore store = MakeStore();
  ReportAll(store, initial_, "0.0", 7, SkewedLoads());
  const planner::LoadTrace trace = store.Trace();
  ASSERT_EQ(trace.num_windows(), 1);
  EXPECT_THAT(trace.window(0, 0), ElementsAre(4000, 100, 100, 100));
  EXPECT_THAT(trace.window(0, 1), ElementsAre(100, 4000, 100, 100));
  EXPECT_THAT(trace.aggregate(1), ElementsAre(100, 4000, 100, 100));
  EXPECT_EQ(store.windows_ingested(), 4);
}

TEST_F(LoadStoreTest, EmptyVersionMeansTheInitialLayout) {
  LoadStore store = MakeStore();
  ReportAll(store, initial_, "", 1, SkewedLoads());
  EXPECT_EQ(store.Trace().num_windows(), 1);
}

TEST_F(LoadStoreTest, MapsEachWindowWithItsOwnVersion) {
  LoadStore store = MakeStore();
  // Half the GPUs still serve 0.0, half already 1.1: one window, two layouts.
  for (int gpu = 0; gpu < 4; ++gpu) {
    const bool flipped = gpu >= 2;
    ASSERT_TRUE(store
                    .Ingest(Window(flipped ? replicated_ : initial_, flipped ? "1.1" : "0.0", gpu,
                                   1, SkewedLoads()))
                    .ok());
  }
  ReportAll(store, replicated_, "1.1", 2, SkewedLoads());
  const planner::LoadTrace trace = store.Trace();
  ASSERT_EQ(trace.num_windows(), 2);
  // Window 2 under 1.1: replicas split the count and the store sums them back.
  EXPECT_THAT(trace.window(1, 0), ElementsAre(4000, 100, 100, 100));
  EXPECT_THAT(trace.window(1, 1), ElementsAre(100, 4000, 100, 100));
  // Window 1 mixes versions and still maps to the same logical loads.
  EXPECT_THAT(trace.window(0, 0), ElementsAre(4000, 100, 100, 100));
  EXPECT_THAT(trace.aggregate(0), ElementsAre(8000, 200, 200, 200));
  EXPECT_FALSE(store.Measured("0.0").has_value());  // window 1 is mixed
}

TEST_F(LoadStoreTest, IncompleteWindowsWaitForTheirGpus) {
  LoadStore store = MakeStore();
  for (int gpu = 0; gpu < 3; ++gpu) {
    ASSERT_TRUE(store.Ingest(Window(initial_, "0.0", gpu, 1, SkewedLoads())).ok());
  }
  EXPECT_EQ(store.Trace().num_windows(), 0);
  EXPECT_FALSE(store.Measured("0.0").has_value());
  ASSERT_TRUE(store.Ingest(Window(initial_, "0.0", 3, 1, SkewedLoads())).ok());
  EXPECT_EQ(store.Trace().num_windows(), 1);
}

TEST_F(LoadStoreTest, KeepsTheLastHorizonWindows) {
  LoadStore store = MakeStore(/*horizon=*/3);
  for (int64_t id = 1; id <= 5; ++id) {
    ReportAll(store, initial_, "0.0", id, {{id, 0, 0, 0}, {0, 0, 0, id}});
  }
  const planner::LoadTrace trace = store.Trace();
  ASSERT_EQ(trace.num_windows(), 3);
  EXPECT_EQ(trace.window(0, 0)[0], 3);
  EXPECT_EQ(trace.window(2, 0)[0], 5);
  EXPECT_EQ(trace.aggregate(0)[0], 3 + 4 + 5);
}

TEST_F(LoadStoreTest, DecayWeighsRecentWindowsMore) {
  LoadStore store = MakeStore(/*horizon=*/8, /*decay=*/0.5);
  ReportAll(store, initial_, "0.0", 1, {{400, 0, 0, 0}, {0, 0, 0, 0}});
  ReportAll(store, initial_, "0.0", 2, {{0, 400, 0, 0}, {0, 0, 0, 0}});
  const planner::LoadTrace trace = store.Trace();
  EXPECT_THAT(trace.aggregate(0), ElementsAre(200, 400, 0, 0));
}

TEST_F(LoadStoreTest, MeasuresBalancednessOfCompleteWindowsOfOneVersion) {
  LoadStore store = MakeStore();
  ReportAll(store, initial_, "0.0", 1, SkewedLoads());
  ReportAll(store, replicated_, "1.1", 2, SkewedLoads());
  std::optional<MeasuredBalance> measured = store.Measured("0.0");
  ASSERT_TRUE(measured.has_value());
  EXPECT_EQ(measured->windows, 1);
  // One expert per GPU: GPU loads are the expert loads, mean 1075 / max 4000.
  EXPECT_NEAR(measured->per_layer[0], 1075.0 / 4000, 1e-12);
  EXPECT_NEAR(measured->mean, 1075.0 / 4000, 1e-12);
  std::optional<MeasuredBalance> replicated = store.Measured("1.1");
  ASSERT_TRUE(replicated.has_value());
  // Layer 0 under 1.1: GPU 0 holds 0 and 1 (2000 + 100), GPU 1 expert 0 (2000).
  EXPECT_NEAR(replicated->per_layer[0], (4300.0 / 4) / 2100, 1e-12);
  EXPECT_FALSE(store.Measured("9.9").has_value());
}

TEST_F(LoadStoreTest, RejectsGpuOutOfRange) {
  LoadStore store = MakeStore();
  craft::v1::GpuWindow window = Window(initial_, "0.0", 0, 1, SkewedLoads());
  window.set_gpu(4);
  ExpectRejected(store, window, RejectReason::kGpuOutOfRange);
  window.set_gpu(-1);
  ExpectRejected(store, window, RejectReason::kGpuOutOfRange);
}

TEST_F(LoadStoreTest, RejectsGpuOfAnotherNode) {
  LoadStore store = MakeStore();
  const std::vector<int> node_gpus = {0, 1};
  ExpectRejected(store, Window(initial_, "0.0", 2, 1, SkewedLoads()), RejectReason::kGpuNotOnNode,
                 node_gpus);
  EXPECT_TRUE(store.Ingest(Window(initial_, "0.0", 1, 1, SkewedLoads()), node_gpus).ok());
}

TEST_F(LoadStoreTest, RejectsUnknownVersion) {
  LoadStore store = MakeStore();
  ExpectRejected(store, Window(initial_, "7.7", 0, 1, SkewedLoads()),
                 RejectReason::kUnknownVersion);
}

TEST_F(LoadStoreTest, RejectsWrongLayerCount) {
  LoadStore store = MakeStore();
  craft::v1::GpuWindow window = Window(initial_, "0.0", 0, 1, SkewedLoads());
  window.add_layers()->add_counts(1);
  ExpectRejected(store, window, RejectReason::kWrongLayerCount);
}

TEST_F(LoadStoreTest, RejectsWrongSlotCountForThatGpuAndVersion) {
  LoadStore store = MakeStore();
  // GPU 0 holds 2 slots of layer 0 under 1.1 but 1 under 0.0.
  ExpectRejected(store, Window(replicated_, "0.0", 0, 1, SkewedLoads()),
                 RejectReason::kWrongSlotCount);
}

TEST_F(LoadStoreTest, RejectsNegativeCount) {
  LoadStore store = MakeStore();
  craft::v1::GpuWindow window = Window(initial_, "0.0", 0, 1, SkewedLoads());
  window.mutable_layers(1)->set_counts(0, -1);
  ExpectRejected(store, window, RejectReason::kNegativeCount);
}

TEST_F(LoadStoreTest, RejectsCountAbove2To40) {
  LoadStore store = MakeStore();
  craft::v1::GpuWindow window = Window(initial_, "0.0", 0, 1, SkewedLoads());
  window.mutable_layers(0)->set_counts(0, kMaxSlotCount + 1);
  ExpectRejected(store, window, RejectReason::kCountTooLarge);
  window.mutable_layers(0)->set_counts(0, kMaxSlotCount);
  EXPECT_TRUE(store.Ingest(window).ok());
}

TEST_F(LoadStoreTest, RejectsNegativeWindowId) {
  LoadStore store = MakeStore();
  ExpectRejected(store, Window(initial_, "0.0", 0, -3, SkewedLoads()), RejectReason::kBadWindowId);
}

TEST_F(LoadStoreTest, RejectsDuplicateReport) {
  LoadStore store = MakeStore();
  ASSERT_TRUE(store.Ingest(Window(initial_, "0.0", 0, 1, SkewedLoads())).ok());
  ExpectRejected(store, Window(initial_, "0.0", 0, 1, SkewedLoads()),
                 RejectReason::kDuplicateWindow);
}

TEST_F(LoadStoreTest, RejectsWindowOlderThanEverythingKept) {
  LoadStore store = MakeStore(/*horizon=*/2);
  ReportAll(store, initial_, "0.0", 10, SkewedLoads());
  ReportAll(store, initial_, "0.0", 11, SkewedLoads());
  ExpectRejected(store, Window(initial_, "0.0", 0, 3, SkewedLoads()), RejectReason::kStaleWindow);
  EXPECT_EQ(store.rejected_total(), 1);
}

TEST(LoadStoreClockTest, AFarFutureClockPoisonsNoOneElse) {
  LayoutHistory history(4);
  absl::StatusOr<planner::Layout> initial = planner::ContiguousLayout(2, 4, {4, 2});
  ASSERT_TRUE(initial.ok());
  history.AddCommitted("0.0", std::make_shared<const planner::Layout>(*initial));
  FakeClock clock(absl::FromUnixMillis(1'700'000'000'000));
  LoadStoreOptions options{2, 4, {4, 2}, 4, std::nullopt, &clock, absl::Seconds(60)};
  LoadStore store(options, &history);
  const int64_t now_id = 1'700'000'000;  // 1 s windows
  auto timed = [&](int gpu, int64_t id) {
    craft::v1::GpuWindow window = testing::Window(*initial, "0.0", gpu, id, SkewedLoads());
    window.set_start_unix_ms(id * 1000);
    return window;
  };
  // Node b's clock is years ahead: its windows are refused, counted, and
  // leave no trace in the store.
  for (int64_t id = std::numeric_limits<int64_t>::max() / 1000 - 10;
       id < std::numeric_limits<int64_t>::max() / 1000; ++id) {
    EXPECT_EQ(store.Ingest(timed(2, id), {2, 3}).code(), absl::StatusCode::kInvalidArgument);
  }
  craft::v1::GpuWindow inflated = timed(3, now_id);
  inflated.set_window_id(std::numeric_limits<int64_t>::max() - 1);  // the id alone, start sane
  EXPECT_EQ(store.Ingest(inflated, {2, 3}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.rejected(RejectReason::kClockSkew), 11);
  // Every node's real windows still go in and complete.
  for (int64_t id = now_id - 3; id <= now_id; ++id) {
    for (int gpu = 0; gpu < 4; ++gpu) {
      const std::vector<int> node = gpu < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3};
      ASSERT_TRUE(store.Ingest(timed(gpu, id), node).ok());
    }
  }
  EXPECT_EQ(store.Trace().num_windows(), 4);
  EXPECT_EQ(store.rejected(RejectReason::kStaleWindow), 0);
}

}  // namespace
}  // namespace craft::server
