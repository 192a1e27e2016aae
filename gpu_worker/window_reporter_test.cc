// The window reporter with the CPU counter: what one window's GpuWindow says.
#include "gpu_worker/window_reporter.h"

#include <cstdint>
#include <vector>

#include "craft/v1/worker.pb.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/layout_state.h"
#include "gpu_worker/test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

constexpr int kTokens = 64;
constexpr int kTopK = 2;

// Reporters for a GPU of the two-GPU layouts, sending into sent_.
class WindowReporterTest : public ::testing::Test {
 protected:
  WindowReporter Reporter(int gpu, bool log_windows = false) {
    return WindowReporter(
        {gpu, absl::Milliseconds(50), log_windows}, testing::TwoGpuTraffic(kTokens, kTopK),
        &counter_,
        [this](craft::v1::WorkerMessage message) { sent_.push_back(std::move(message)); });
  }

  CpuLoadCounter counter_;
  std::vector<craft::v1::WorkerMessage> sent_;
};

TEST_F(WindowReporterTest, AWindowIsCountedWithTheLayoutThatServedIt) {
  const LayoutState next = LayoutState::Of(testing::NextTwoGpuLayout(), "1.1", /*gpu=*/0);
  WindowReporter reporter = Reporter(0, /*log_windows=*/true);
  reporter.Report(/*window_id=*/40, next);
  ASSERT_EQ(sent_.size(), 1u);
  ASSERT_TRUE(sent_[0].has_window());
  const craft::v1::GpuWindow& window = sent_[0].window();
  EXPECT_EQ(window.gpu(), 0);
  EXPECT_EQ(window.layout_version(), "1.1");
  EXPECT_EQ(window.window_id(), 40);
  EXPECT_EQ(window.start_unix_ms(), 40 * 50);
  EXPECT_EQ(window.duration_ms(), 50);
  ASSERT_EQ(window.layers_size(), 2);
  EXPECT_EQ(window.layers(0).counts_size(), 3) << "GPU 0's slots of 1.1 in layer 0";
  EXPECT_EQ(window.layers(1).counts_size(), 2);
  int64_t counted = 0;
  for (const craft::v1::SlotCounts& layer : window.layers()) {
    for (int64_t count : layer.counts()) counted += count;
  }
  const WindowReporter::Stats stats = reporter.stats();
  EXPECT_EQ(stats.windows_reported, 1);
  EXPECT_EQ(stats.assignments, counted);
  EXPECT_EQ(stats.windows_held, 0);
}

TEST_F(WindowReporterTest, TheGpusOfALayoutCountEveryTokenBetweenThem) {
  int64_t total = 0;
  for (int gpu : {0, 1}) {
    const LayoutState initial = LayoutState::Of(testing::InitialTwoGpuLayout(), "0.0", gpu);
    WindowReporter reporter = Reporter(gpu);
    reporter.Report(/*window_id=*/7, initial);
    total += reporter.stats().assignments;
  }
  EXPECT_EQ(total, 2 * kTokens * kTopK) << "two layers of every token's top-k choices";
}

TEST_F(WindowReporterTest, AHeldWindowIsCountedAndNotSent) {
  WindowReporter reporter = Reporter(0);
  reporter.Hold();
  reporter.Hold();
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(reporter.stats().windows_held, 2);
  EXPECT_EQ(reporter.stats().windows_reported, 0);
}

TEST_F(WindowReporterTest, ACounterErrorSkipsTheWindow) {
  // A layout of one layer against a two-layer traffic: the counter refuses it.
  planner::Layout one_layer = testing::InitialTwoGpuLayout();
  one_layer.layers.pop_back();
  WindowReporter reporter = Reporter(0);
  reporter.Report(/*window_id=*/1, LayoutState::Of(one_layer, "0.0", 0));
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(reporter.stats().windows_reported, 0);
}

}  // namespace
}  // namespace craft::gpu_worker
