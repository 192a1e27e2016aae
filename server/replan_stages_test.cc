#include "server/replan_stages.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::server {
namespace {

TEST(ReplanStagesTest, NamesAreTheMetricLabels) {
  EXPECT_EQ(ReplanStageName(ReplanStage::kTrace), "trace");
  EXPECT_EQ(ReplanStageName(ReplanStage::kPlan), "plan");
  EXPECT_EQ(ReplanStageName(ReplanStage::kEvaluate), "evaluate");
  EXPECT_EQ(ReplanStageName(ReplanStage::kPrepare), "prepare");
}

TEST(StageTimerTest, LapsSumPerStageInStageOrderAndMarksCountNowhere) {
  FakeClock clock;
  StageTimer timer(&clock);
  clock.Advance(absl::Seconds(100));  // before the first stage
  timer.Mark();
  clock.Advance(absl::Milliseconds(2));
  timer.Lap(ReplanStage::kPlan);
  clock.Advance(absl::Milliseconds(3));
  timer.Lap(ReplanStage::kEvaluate);
  clock.Advance(absl::Milliseconds(4));
  timer.Lap(ReplanStage::kPlan);

  const std::vector<StageTime> times = timer.times();
  ASSERT_EQ(times.size(), 2u);
  EXPECT_EQ(times[0].stage, ReplanStage::kPlan);
  EXPECT_EQ(times[0].duration, absl::Milliseconds(6));
  EXPECT_EQ(times[1].stage, ReplanStage::kEvaluate);
  EXPECT_EQ(times[1].duration, absl::Milliseconds(3));
}

TEST(StageTimerTest, NothingLappedNothingReported) {
  FakeClock clock;
  EXPECT_TRUE(StageTimer(&clock).times().empty());
}

}  // namespace
}  // namespace craft::server
