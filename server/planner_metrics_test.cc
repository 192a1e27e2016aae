#include "server/planner_metrics.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/promtool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "server/internal/test_support.h"

namespace craft::server {
namespace {

using testing::AckOf;
using testing::FakeConnection;
using ::testing::HasSubstr;
using testing::Hello;
using testing::NackOf;
using ::testing::Not;
using testing::SmallConfig;

// A planner without gRPC: coordinator, load store and replan loop (not
// started), watched by PlannerMetrics.
class PlannerMetricsTest : public ::testing::Test {
 protected:
  PlannerMetricsTest()
      : config_(SmallConfig()),
        history_(8),
        load_store_({config_.model.num_layers, config_.model.num_experts, config_.cluster,
                     config_.window_horizon, config_.decay},
                    &history_),
        metrics_(std::make_shared<PlannerMetrics>(config_)) {
    auto created = ApplyCoordinator::Create({config_.model, config_.cluster, config_.apply_timeout},
                                            &store_, &history_, &clock_);
    EXPECT_TRUE(created.ok()) << created.status();
    coordinator_ = *std::move(created);
    ApplyCoordinator::Hooks hooks;
    hooks.on_apply_finished = [this](const ApplyRecord& r) { metrics_->OnApplyFinished(r); };
    coordinator_->SetHooks(std::move(hooks));
    loop_ = std::make_unique<ReplanLoop>(
        config_, &load_store_, coordinator_.get(), &clock_,
        [this](const ReplanOutcome& outcome) { metrics_->OnReplan(outcome); });
    metrics_->Watch(coordinator_.get(), &load_store_);
  }
  ~PlannerMetricsTest() override { metrics_->Watch(nullptr, nullptr); }

  void ConnectBoth() {
    ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_).ok());
    ASSERT_TRUE(coordinator_->Connect(Hello("b", {2, 3}), b_).ok());
  }

  // Every GPU reports windows [first, first + count) under `version`.
  void Report(const planner::Layout& layout, const std::string& version, int64_t first, int count) {
    for (int64_t w = first; w < first + count; ++w) {
      for (int gpu = 0; gpu < config_.cluster.num_gpus; ++gpu) {
        ASSERT_TRUE(
            load_store_.Ingest(testing::Window(layout, version, gpu, w, testing::SkewedLoads()))
                .ok());
      }
    }
  }

  planner::Layout Initial() const {
    return *planner::ContiguousLayout(config_.model.num_layers, config_.model.num_experts,
                                      config_.cluster);
  }

  // Expects `text` to pass `promtool check metrics` (skips without promtool).
  static void ExpectLintClean(const std::string& text) {
    const absl::Status lint = craft::testing::PromtoolCheckMetrics(text);
    if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
    EXPECT_TRUE(lint.ok()) << lint << "\n" << text;
  }

  PlannerConfig config_;
  FakeClock clock_;
  InMemoryStateStore store_;
  LayoutHistory history_;
  LoadStore load_store_;
  std::shared_ptr<PlannerMetrics> metrics_;
  std::unique_ptr<ApplyCoordinator> coordinator_;
  std::unique_ptr<ReplanLoop> loop_;
  std::shared_ptr<FakeConnection> a_ = std::make_shared<FakeConnection>();
  std::shared_ptr<FakeConnection> b_ = std::make_shared<FakeConnection>();
};

TEST_F(PlannerMetricsTest, FreshPlannerExportsEverySeriesAndPassesPromtool) {
  const std::string text = metrics_->Serialize();
  for (const char* series : {
           "craft_planner_connected_agents 0",
           "craft_planner_gpus_without_agent 4",
           "craft_planner_configured_gpus 4",
           "craft_planner_committed_layout_seq 0",
           "craft_planner_layer_replicas{layer=\"1\"} 0",
           "craft_planner_gpu_replica_memory_bytes{gpu=\"3\"} 0",
           "craft_planner_applies_total{result=\"aborted\"} 0",
           "craft_planner_apply_aborts_total{reason=\"timeout\"} 0",
           "craft_planner_agent_nacks_total{code=\"worker_failed\"} 0",
           "craft_planner_load_windows_rejected_total{reason=\"unknown_version\"} 0",
           "craft_planner_replans_total{result=\"gated\"} 0",
           "craft_planner_plan_duration_seconds_count 0",
           "craft_planner_replan_stage_seconds_count{stage=\"trace\"} 0",
           "craft_planner_replan_stage_seconds_count{stage=\"prepare\"} 0",
           "craft_planner_apply_prepare_to_commit_seconds_count 0",
       }) {
    EXPECT_THAT(text, HasSubstr(series)) << series;
  }
  // Not measured yet.
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows 0"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, ReplanStagesAreObservedUnderTheirStageLabel) {
  ReplanOutcome outcome;
  outcome.result = ReplanResult::kGated;
  outcome.stage_times = {{ReplanStage::kTrace, absl::Milliseconds(500)},
                         {ReplanStage::kPlan, absl::Seconds(2)}};
  metrics_->OnReplan(outcome);
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_sum{stage=\"trace\"} 0.5"));
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_sum{stage=\"plan\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_count{stage=\"evaluate\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_sum 2"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, NodeLoadHandlingTimesAreAFineHistogram) {
  metrics_->OnAgentLoadHandled(absl::Microseconds(40));
  metrics_->OnAgentLoadHandled(absl::Milliseconds(60));
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_load_handling_seconds_count 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_load_handling_seconds_bucket{le=\"5e-05\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_load_handling_seconds_bucket{le=\"0.05\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_load_handling_seconds_bucket{le=\"0.1\"} 2"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, ForcedApplyIsCountedTimedAndChangesTheLayoutGauges) {
  ConnectBoth();
  Report(Initial(), "0.0", 1, 3);
  EXPECT_THAT(metrics_->Serialize(), HasSubstr("craft_planner_measured_windows 3"));

  const ReplanOutcome outcome = loop_->RunOnce(/*force=*/true);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  clock_.Advance(absl::Milliseconds(250));
  coordinator_->HandleAck("a", a_.get(), AckOf(a_->last(), craft::v1::PREPARED));
  coordinator_->HandleAck("b", b_.get(), AckOf(b_->last(), craft::v1::PREPARED));
  std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_replans_total{result=\"pushed\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_count 1"));
  for (const char* stage : {"trace", "plan", "evaluate", "prepare"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("craft_planner_replan_stage_seconds_count{stage=\"",
                                             stage, "\"} 1")))
        << stage;
  }
  EXPECT_THAT(text, HasSubstr("craft_planner_applies_total{result=\"committed\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_sum 0.25"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_persist_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_committed_layout_seq 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_in_progress 1"));  // commit acks pending
  // Agents still report the old version until they answer the commit.
  EXPECT_THAT(text, HasSubstr("craft_planner_agents_on_committed_layout 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_balancedness{stat=\"mean\",when=\"after\"}"));
  EXPECT_THAT(text, Not(HasSubstr("craft_planner_layer_replicas{layer=\"0\"} 0\n")));

  coordinator_->HandleAck("a", a_.get(), AckOf(a_->last(), craft::v1::COMMITTED));
  coordinator_->HandleAck("b", b_.get(), AckOf(b_->last(), craft::v1::COMMITTED));
  text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_agents_on_committed_layout 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_gpus_on_committed_layout 4"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_in_progress 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_connects_total 2"));
  // No window under the new version yet: the measurement restarts.
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows 0"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, AbortsAreCountedByReasonAndNacksByCode) {
  ConnectBoth();
  Report(Initial(), "0.0", 1, 2);
  ASSERT_EQ(loop_->RunOnce(true).result, ReplanResult::kPushed);
  coordinator_->HandleNack("a", a_.get(),
                           NackOf(a_->last(), craft::v1::WORKER_FAILED, /*last_good=*/""));
  ASSERT_EQ(loop_->RunOnce(true).result, ReplanResult::kPushed);
  clock_.Advance(config_.apply_timeout + absl::Seconds(1));
  coordinator_->CheckTimeouts();
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_aborts_total{reason=\"agent_nack\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_aborts_total{reason=\"timeout\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_nacks_total{code=\"worker_failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_applies_total{result=\"aborted\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_applies_started_total 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_count 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_persist_seconds_count 0")) << "nothing saved";
}

TEST_F(PlannerMetricsTest, LoadWindowsAreCountedAndMeasured) {
  ConnectBoth();
  Report(Initial(), "0.0", 1, 2);
  craft::v1::GpuWindow unknown = testing::Window(Initial(), "0.0", 0, 9, testing::SkewedLoads());
  unknown.set_layout_version("7.7");
  EXPECT_FALSE(load_store_.Ingest(unknown).ok());
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_load_windows_ingested_total 8"));
  EXPECT_THAT(text,
              HasSubstr("craft_planner_load_windows_rejected_total{reason=\"unknown_version\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows 2"));
  EXPECT_THAT(text, Not(HasSubstr("craft_planner_layer_balancedness{layer=\"0\"} Nan")));
  EXPECT_THAT(text, HasSubstr("craft_planner_tokens_total"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, DetachedMetricsKeepTheirLastValues) {
  ConnectBoth();
  metrics_->Watch(nullptr, nullptr);
  coordinator_->Disconnect("a", a_.get());
  EXPECT_THAT(metrics_->Serialize(), HasSubstr("craft_planner_connected_agents 0"));
}

}  // namespace
}  // namespace craft::server
