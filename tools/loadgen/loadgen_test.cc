// Unit tests of the load generator's pure parts: slot loads, jitter,
// percentiles, the apply bookkeeping and the replan stage results.
#include "tools/loadgen/loadgen.h"

#include <numeric>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "tools/loadgen/apply_recorder.h"
#include "tools/loadgen/replanner.h"
#include "tools/loadgen/slot_loads.h"

namespace craft::loadgen {
namespace {

PopularityOptions SmallModel() {
  PopularityOptions options;
  options.num_layers = 3;
  options.num_experts = 8;
  options.top_k = 2;
  options.num_gpus = 4;
  options.tokens_per_gpu = 1000;
  return options;
}

TEST(SlotLoadsTest, SlotsOfEveryGpuSumToTheClusterTokens) {
  const ExpertLoads loads = *ExpertLoads::Synthesize(SmallModel());
  const planner::Layout layout = *planner::ContiguousLayout(3, 8, {4, 2});
  const auto slots = *SlotLoads::Compute(loads, layout);
  for (int l = 0; l < 3; ++l) {
    double total = 0;
    for (int g = 0; g < 4; ++g) {
      absl::Span<const double> counts = slots->Counts(g, l);
      EXPECT_EQ(static_cast<int>(counts.size()), layout.layers[l].slots_per_gpu[g]);
      total = std::accumulate(counts.begin(), counts.end(), total);
    }
    EXPECT_NEAR(total, 4 * 1000 * 2, 1e-6);  // num_gpus x tokens_per_gpu x top_k
  }
}

TEST(SlotLoadsTest, ReplicasSplitTheirExpertsLoad) {
  const ExpertLoads loads = *ExpertLoads::Synthesize(SmallModel());
  planner::Layout layout = *planner::ContiguousLayout(3, 8, {4, 2});
  // Layer 0: expert 0 twice, on GPUs 0 and 3.
  layout.layers[0].slots_per_gpu = {3, 2, 2, 2};
  layout.layers[0].phy2log = {0, 1, 2, 3, 4, 5, 6, 7, 0};
  const auto slots = *SlotLoads::Compute(loads, layout);
  EXPECT_DOUBLE_EQ(slots->Counts(0, 0)[0], loads.Expected(0, 0) / 2);
  EXPECT_DOUBLE_EQ(slots->Counts(3, 0)[1], loads.Expected(0, 0) / 2);
  EXPECT_DOUBLE_EQ(slots->Counts(0, 0)[1], loads.Expected(0, 1));
}

TEST(SlotLoadsTest, RefusesAnotherShape) {
  const ExpertLoads loads = *ExpertLoads::Synthesize(SmallModel());
  const planner::Layout layout = *planner::ContiguousLayout(2, 8, {4, 2});
  EXPECT_EQ(SlotLoads::Compute(loads, layout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SlotLoadCacheTest, ComputesEachVersionOnce) {
  const ExpertLoads loads = *ExpertLoads::Synthesize(SmallModel());
  const planner::Layout layout = *planner::ContiguousLayout(3, 8, {4, 2});
  SlotLoadCache cache(&loads);
  const auto first = *cache.Get("0.0", layout);
  EXPECT_EQ(*cache.Get("0.0", layout), first);
  EXPECT_NE(*cache.Get("1.1", layout), first);
}

TEST(AppendJitteredTest, StaysWithinTheJitter) {
  FastRng rng(7);
  google::protobuf::RepeatedField<int64_t> out;
  const std::vector<double> base(1000, 100.0);
  AppendJittered(base, 0.1, &rng, &out);
  ASSERT_EQ(out.size(), 1000);
  for (int64_t count : out) {
    EXPECT_GE(count, 90);
    EXPECT_LE(count, 110);
  }
}

TEST(PercentileTest, NearestRank) {
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({3, 1, 2, 4}, 0.5), 2);
  EXPECT_EQ(Percentile({3, 1, 2, 4}, 0.99), 4);
  EXPECT_EQ(Percentile({3, 1, 2, 4}, 0), 1);
}

TEST(ApplyRecorderTest, CommittedOnlyWhenEveryAgentGotTheCommit) {
  ApplyRecorder recorder(/*num_agents=*/2);
  recorder.Prepared("1.1", 100);
  recorder.Prepared("1.1", 100);
  recorder.Committed("1.1");
  EXPECT_TRUE(recorder.InProgress());
  EXPECT_EQ(recorder.Summarize().unfinished, 1);
  recorder.Committed("1.1");
  EXPECT_FALSE(recorder.InProgress());

  recorder.Prepared("1.2", 100);
  recorder.Aborted("1.2");
  const ApplySummary summary = recorder.Summarize();
  EXPECT_EQ(summary.prepared, 2);
  EXPECT_EQ(summary.committed, 1);
  EXPECT_EQ(summary.aborted, 1);
  EXPECT_EQ(summary.unfinished, 0);
  ASSERT_EQ(summary.prepare_to_commit_ms.size(), 1u);
  EXPECT_GE(summary.prepare_to_commit_ms[0], 0);
  EXPECT_EQ(summary.max_prepare_bytes, 100);
}

TEST(ApplyRecorderTest, ForgetsFinishedAppliesOnly) {
  ApplyRecorder recorder(/*num_agents=*/1);
  recorder.Prepared("1.1", 500);  // a warm-up apply
  recorder.Committed("1.1");
  recorder.Prepared("1.2", 40);  // still preparing
  recorder.ForgetFinished();
  const ApplySummary summary = recorder.Summarize();
  EXPECT_EQ(summary.prepared, 1);
  EXPECT_EQ(summary.unfinished, 1);
  EXPECT_EQ(summary.max_prepare_bytes, 40);
}

craft::v1::ReplanResponse WithStages(double trace_s, double plan_s) {
  craft::v1::ReplanResponse response;
  for (const auto& [stage, seconds] : {std::pair{"trace", trace_s}, std::pair{"plan", plan_s}}) {
    craft::v1::StageTime* time = response.add_stage_times();
    time->set_stage(stage);
    time->set_seconds(seconds);
  }
  return response;
}

TEST(ReplanStatsTest, StageTimesArePrintedPerStageInTheirOrder) {
  LoadgenReport report;
  for (double plan_s : {0.002, 0.004, 0.010}) {
    report.replans.AddStageTimes(WithStages(0.001, plan_s));
  }
  ASSERT_EQ(report.replans.stages.size(), 2u);
  EXPECT_EQ(report.replans.stages[0].stage, "trace");
  EXPECT_EQ(report.replans.stages[1].stage, "plan");

  std::ostringstream out;
  PrintReport(report, out);
  EXPECT_THAT(out.str(), ::testing::HasSubstr("replan_stage_trace_ms_p50=1.00\n"
                                              "replan_stage_trace_ms_max=1.00\n"
                                              "replan_stage_plan_ms_p50=4.00\n"
                                              "replan_stage_plan_ms_max=10.00\n"));
}

}  // namespace
}  // namespace craft::loadgen
