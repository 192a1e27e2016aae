#include "server/planner_metrics.h"

#include <memory>
#include <string>
#include <vector>

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

// One placement group of a planner without gRPC: coordinator, load store and
// replan loop (not started), reporting to `metrics` under the group's name
// and watched by it while alive.
class GroupRig {
 public:
  GroupRig(const PlacementGroup& group, PlannerMetrics& metrics, FakeClock& clock)
      : name(group.name),
        config(group.config),
        history(8),
        load_store({config.model.num_layers, config.model.num_experts, config.cluster,
                    config.window_horizon, config.decay},
                   &history),
        metrics_(metrics) {
    auto created = ApplyCoordinator::Create({config.model, config.cluster, config.apply_timeout},
                                            &store, &history, &clock);
    EXPECT_TRUE(created.ok()) << created.status();
    coordinator = *std::move(created);
    ApplyCoordinator::Hooks hooks;
    hooks.on_apply_finished = [this](const ApplyRecord& r) { metrics_.OnApplyFinished(name, r); };
    coordinator->SetHooks(std::move(hooks));
    loop = std::make_unique<ReplanLoop>(
        config, &load_store, coordinator.get(), &clock,
        [this](const ReplanOutcome& outcome) { metrics_.OnReplan(name, outcome); });
    metrics_.Watch(name, coordinator.get(), &load_store);
  }
  ~GroupRig() { metrics_.Watch(name, nullptr, nullptr); }

  // Every GPU reports windows [first, first + count) under `version`, with
  // expert l % E of layer l hot (SkewedLoads() for SmallConfig()).
  void Report(const planner::Layout& layout, const std::string& version, int64_t first, int count) {
    std::vector<std::vector<int64_t>> loads(config.model.num_layers,
                                            std::vector<int64_t>(config.model.num_experts, 100));
    for (int l = 0; l < config.model.num_layers; ++l) loads[l][l % config.model.num_experts] = 4000;
    for (int64_t w = first; w < first + count; ++w) {
      for (int gpu = 0; gpu < config.cluster.num_gpus; ++gpu) {
        ASSERT_TRUE(load_store.Ingest(testing::Window(layout, version, gpu, w, loads)).ok());
      }
    }
  }

  planner::Layout Initial() const {
    return *planner::ContiguousLayout(config.model.num_layers, config.model.num_experts,
                                      config.cluster);
  }

  const std::string name;
  const PlannerConfig config;
  InMemoryStateStore store;
  LayoutHistory history;
  LoadStore load_store;
  std::unique_ptr<ApplyCoordinator> coordinator;
  std::unique_ptr<ReplanLoop> loop;

 private:
  PlannerMetrics& metrics_;
};

// Expects `text` to pass `promtool check metrics` (skips without promtool).
void ExpectLintClean(const std::string& text) {
  const absl::Status lint = craft::testing::PromtoolCheckMetrics(text);
  if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
  EXPECT_TRUE(lint.ok()) << lint << "\n" << text;
}

// A planner without groups: the one group "default" of SmallConfig().
class PlannerMetricsTest : public ::testing::Test {
 protected:
  PlannerMetricsTest()
      : metrics_(std::make_shared<PlannerMetrics>(std::vector<PlacementGroup>{Default()})),
        group_(Default(), *metrics_, clock_) {}

  static PlacementGroup Default() { return {kDefaultGroup, "", SmallConfig()}; }

  void ConnectBoth() {
    ASSERT_TRUE(group_.coordinator->Connect(Hello("a", {0, 1}), a_).ok());
    ASSERT_TRUE(group_.coordinator->Connect(Hello("b", {2, 3}), b_).ok());
  }

  FakeClock clock_;
  std::shared_ptr<PlannerMetrics> metrics_;
  GroupRig group_;
  std::shared_ptr<FakeConnection> a_ = std::make_shared<FakeConnection>();
  std::shared_ptr<FakeConnection> b_ = std::make_shared<FakeConnection>();
};

TEST_F(PlannerMetricsTest, FreshPlannerExportsEverySeriesAndPassesPromtool) {
  const std::string text = metrics_->Serialize();
  for (const char* series : {
           "craft_planner_connected_agents{group=\"default\"} 0",
           "craft_planner_gpus_without_agent{group=\"default\"} 4",
           "craft_planner_configured_gpus{group=\"default\"} 4",
           "craft_planner_committed_layout_seq{group=\"default\"} 0",
           "craft_planner_layer_replicas{group=\"default\",layer=\"1\"} 0",
           "craft_planner_gpu_replica_memory_bytes{gpu=\"3\",group=\"default\"} 0",
           "craft_planner_applies_total{group=\"default\",result=\"aborted\"} 0",
           "craft_planner_apply_aborts_total{group=\"default\",reason=\"timeout\"} 0",
           "craft_planner_agent_nacks_total{code=\"worker_failed\",group=\"default\"} 0",
           "craft_planner_load_windows_rejected_total{group=\"default\",reason=\"unknown_version\"}"
           " 0",
           "craft_planner_replans_total{group=\"default\",result=\"gated\"} 0",
           "craft_planner_plan_duration_seconds_count{group=\"default\"} 0",
           "craft_planner_replan_stage_seconds_count{group=\"default\",stage=\"trace\"} 0",
           "craft_planner_replan_stage_seconds_count{group=\"default\",stage=\"prepare\"} 0",
           "craft_planner_apply_prepare_to_commit_seconds_count{group=\"default\"} 0",
           // The planner's own series carry no group.
           "\ncraft_planner_epoch 1\n",
           "\ncraft_planner_leader 1\n",
       }) {
    EXPECT_THAT(text, HasSubstr(series)) << series;
  }
  // Not measured yet.
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows{group=\"default\"} 0"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, ReplanStagesAreObservedUnderTheirStageLabel) {
  ReplanOutcome outcome;
  outcome.result = ReplanResult::kGated;
  outcome.stage_times = {{ReplanStage::kTrace, absl::Milliseconds(500)},
                         {ReplanStage::kPlan, absl::Seconds(2)}};
  metrics_->OnReplan(kDefaultGroup, outcome);
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_sum{group=\"default\",stage="
                              "\"trace\"} 0.5"));
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_sum{group=\"default\",stage="
                              "\"plan\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_replan_stage_seconds_count{group=\"default\",stage="
                              "\"evaluate\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_sum{group=\"default\"} 2"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, ForcedApplyIsCountedTimedAndChangesTheLayoutGauges) {
  ConnectBoth();
  group_.Report(group_.Initial(), "0.0", 1, 3);
  EXPECT_THAT(metrics_->Serialize(),
              HasSubstr("craft_planner_measured_windows{group=\"default\"} 3"));

  const ReplanOutcome outcome = group_.loop->RunOnce(/*force=*/true);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  clock_.Advance(absl::Milliseconds(250));
  ApplyCoordinator& coordinator = *group_.coordinator;
  coordinator.HandleAck("a", a_.get(), AckOf(a_->last(), craft::v1::PREPARED));
  coordinator.HandleAck("b", b_.get(), AckOf(b_->last(), craft::v1::PREPARED));
  std::string text = metrics_->Serialize();
  EXPECT_THAT(text,
              HasSubstr("craft_planner_replans_total{group=\"default\",result=\"pushed\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_count{group=\"default\"} 1"));
  for (const char* stage : {"trace", "plan", "evaluate", "prepare"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat(
                          "craft_planner_replan_stage_seconds_count{group=\"default\",stage=\"",
                          stage, "\"} 1")))
        << stage;
  }
  EXPECT_THAT(text,
              HasSubstr("craft_planner_applies_total{group=\"default\",result=\"committed\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_count{group=\"default\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_sum{group=\"default\"} 0.25"));
  EXPECT_THAT(text, HasSubstr("craft_planner_committed_layout_seq{group=\"default\"} 1"));
  // Commit acks pending.
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_in_progress{group=\"default\"} 1"));
  // Agents still report the old version until they answer the commit.
  EXPECT_THAT(text, HasSubstr("craft_planner_agents_on_committed_layout{group=\"default\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_balancedness{group=\"default\",stat=\"mean\","
                              "when=\"after\"}"));
  EXPECT_THAT(text,
              Not(HasSubstr("craft_planner_layer_replicas{group=\"default\",layer=\"0\"} 0\n")));

  coordinator.HandleAck("a", a_.get(), AckOf(a_->last(), craft::v1::COMMITTED));
  coordinator.HandleAck("b", b_.get(), AckOf(b_->last(), craft::v1::COMMITTED));
  text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_agents_on_committed_layout{group=\"default\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_gpus_on_committed_layout{group=\"default\"} 4"));
  EXPECT_THAT(text, HasSubstr("craft_planner_apply_in_progress{group=\"default\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_agent_connects_total{group=\"default\"} 2"));
  // No window under the new version yet: the measurement restarts.
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows{group=\"default\"} 0"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, AbortsAreCountedByReasonAndNacksByCode) {
  ConnectBoth();
  group_.Report(group_.Initial(), "0.0", 1, 2);
  ASSERT_EQ(group_.loop->RunOnce(true).result, ReplanResult::kPushed);
  group_.coordinator->HandleNack("a", a_.get(),
                                 NackOf(a_->last(), craft::v1::WORKER_FAILED, /*last_good=*/""));
  ASSERT_EQ(group_.loop->RunOnce(true).result, ReplanResult::kPushed);
  clock_.Advance(group_.config.apply_timeout + absl::Seconds(1));
  group_.coordinator->CheckTimeouts();
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(
      text,
      HasSubstr("craft_planner_apply_aborts_total{group=\"default\",reason=\"agent_nack\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("craft_planner_apply_aborts_total{group=\"default\",reason=\"timeout\"} 1"));
  EXPECT_THAT(
      text,
      HasSubstr("craft_planner_agent_nacks_total{code=\"worker_failed\",group=\"default\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("craft_planner_applies_total{group=\"default\",result=\"aborted\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_applies_started_total{group=\"default\"} 2"));
  EXPECT_THAT(
      text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_count{group=\"default\"} 0"));
}

TEST_F(PlannerMetricsTest, LoadWindowsAreCountedAndMeasured) {
  ConnectBoth();
  group_.Report(group_.Initial(), "0.0", 1, 2);
  craft::v1::GpuWindow unknown =
      testing::Window(group_.Initial(), "0.0", 0, 9, testing::SkewedLoads());
  unknown.set_layout_version("7.7");
  EXPECT_FALSE(group_.load_store.Ingest(unknown).ok());
  group_.coordinator->CountRejectedWindows("a", 1);  // as the gateway does for a's stream
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_load_windows_ingested_total{group=\"default\"} 8"));
  EXPECT_THAT(text, HasSubstr("craft_planner_load_windows_rejected_total{group=\"default\",reason="
                              "\"unknown_version\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_node_windows_rejected_total{group=\"default\",node="
                              "\"a\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows{group=\"default\"} 2"));
  EXPECT_THAT(
      text, Not(HasSubstr("craft_planner_layer_balancedness{group=\"default\",layer=\"0\"} Nan")));
  EXPECT_THAT(text, HasSubstr("craft_planner_tokens_total{group=\"default\"}"));
  ExpectLintClean(text);
}

TEST_F(PlannerMetricsTest, DetachedMetricsKeepTheirLastValues) {
  ConnectBoth();
  metrics_->Watch(kDefaultGroup, nullptr, nullptr);
  group_.coordinator->Disconnect("a", a_.get());
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_connected_agents{group=\"default\"} 0"));
  // Serving no group, the planner does not lead.
  EXPECT_THAT(text, HasSubstr("\ncraft_planner_leader 0\n"));
}

TEST_F(PlannerMetricsTest, UnknownGroupsAreIgnored) {
  ReplanOutcome outcome;
  outcome.result = ReplanResult::kGated;
  metrics_->OnReplan("elsewhere", outcome);
  metrics_->OnApplyFinished("elsewhere", ApplyRecord{});
  metrics_->Watch("elsewhere", group_.coordinator.get(), &group_.load_store);
  metrics_->Watch(kDefaultGroup, nullptr, nullptr);
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, Not(HasSubstr("elsewhere")));
  EXPECT_THAT(text, HasSubstr("craft_planner_replans_total{group=\"default\",result=\"gated\"} 0"));
  EXPECT_THAT(text, HasSubstr("\ncraft_planner_leader 0\n"));
}

// A decode pool next to SmallConfig()'s prefill pool: 3 layers x 8 experts on
// 8 GPUs (2 nodes).
PlannerConfig DecodeConfig() {
  PlannerConfig config = SmallConfig();
  config.model.num_layers = 3;
  config.model.num_experts = 8;
  config.cluster = {8, 2};
  config.plan.cluster = config.cluster;
  return config;
}

int Occurrences(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

TEST(PlannerMetricsGroupsTest, EachGroupHasItsOwnSeriesOfItsOwnShape) {
  FakeClock clock;
  const std::vector<PlacementGroup> groups = {{"prefill", "", SmallConfig()},
                                              {"decode", "", DecodeConfig()}};
  auto metrics = std::make_shared<PlannerMetrics>(groups);
  GroupRig prefill(groups[0], *metrics, clock);
  GroupRig decode(groups[1], *metrics, clock);

  std::string text = metrics->Serialize();
  for (const char* series : {
           "craft_planner_configured_gpus{group=\"prefill\"} 4",
           "craft_planner_configured_gpus{group=\"decode\"} 8",
           "craft_planner_configured_layers{group=\"prefill\"} 2",
           "craft_planner_configured_layers{group=\"decode\"} 3",
           "craft_planner_gpus_without_agent{group=\"prefill\"} 4",
           "craft_planner_gpus_without_agent{group=\"decode\"} 8",
           "craft_planner_layer_replicas{group=\"prefill\",layer=\"1\"} 0",
           "craft_planner_layer_replicas{group=\"decode\",layer=\"2\"} 0",
           "craft_planner_gpu_replica_memory_bytes{gpu=\"7\",group=\"decode\"} 0",
       }) {
    EXPECT_THAT(text, HasSubstr(series)) << series;
  }
  EXPECT_THAT(text, Not(HasSubstr("craft_planner_layer_replicas{group=\"prefill\",layer=\"2\"}")));
  EXPECT_THAT(text, Not(HasSubstr("craft_planner_gpu_replica_memory_bytes{gpu=\"4\",group="
                                  "\"prefill\"}")));
  // One family each, holding both groups' series; the planner's own series once.
  EXPECT_EQ(Occurrences(text, "# TYPE craft_planner_configured_gpus "), 1);
  EXPECT_EQ(Occurrences(text, "# TYPE craft_planner_replan_stage_seconds "), 1);
  EXPECT_EQ(Occurrences(text, "\ncraft_planner_leader "), 1);
  EXPECT_EQ(Occurrences(text, "\ncraft_planner_epoch "), 1);
  ExpectLintClean(text);

  // Scrape-time values come from each group's own components.
  auto a = std::make_shared<FakeConnection>();
  auto b = std::make_shared<FakeConnection>();
  ASSERT_TRUE(prefill.coordinator->Connect(Hello("a", {0, 1}), a).ok());
  ASSERT_TRUE(prefill.coordinator->Connect(Hello("b", {2, 3}), b).ok());
  decode.Report(decode.Initial(), "0.0", 1, 2);
  text = metrics->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_connected_agents{group=\"prefill\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_connected_agents{group=\"decode\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_load_windows_ingested_total{group=\"prefill\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_load_windows_ingested_total{group=\"decode\"} 16"));
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows{group=\"prefill\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_measured_windows{group=\"decode\"} 2"));

  // An event of one group moves that group's series only.
  ReplanOutcome gated;
  gated.result = ReplanResult::kGated;
  gated.stage_times = {{ReplanStage::kPlan, absl::Seconds(2)}};
  metrics->OnReplan("decode", gated);
  ApplyRecord committed;
  committed.committed = true;
  committed.prepare_duration = absl::Milliseconds(250);
  metrics->OnApplyFinished("prefill", committed);
  text = metrics->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_planner_replans_total{group=\"decode\",result=\"gated\"} 1"));
  EXPECT_THAT(text, HasSubstr("craft_planner_replans_total{group=\"prefill\",result=\"gated\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_sum{group=\"decode\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_planner_plan_duration_seconds_count{group=\"prefill\"} 0"));
  EXPECT_THAT(
      text, HasSubstr("craft_planner_apply_prepare_to_commit_seconds_sum{group=\"prefill\"} 0.25"));
  EXPECT_THAT(text,
              HasSubstr("craft_planner_apply_prepare_to_commit_seconds_count{group=\"decode\"} 0"));
  EXPECT_THAT(text, HasSubstr("craft_planner_last_commit_timestamp_seconds{group=\"decode\"} 0\n"));
  EXPECT_THAT(text,
              Not(HasSubstr("craft_planner_last_commit_timestamp_seconds{group=\"prefill\"} 0\n")));
  ExpectLintClean(text);

  // The planner leads while it serves any group.
  metrics->Watch("decode", nullptr, nullptr);
  EXPECT_THAT(metrics->Serialize(), HasSubstr("\ncraft_planner_leader 1\n"));
  metrics->Watch("prefill", nullptr, nullptr);
  EXPECT_THAT(metrics->Serialize(), HasSubstr("\ncraft_planner_leader 0\n"));
}

}  // namespace
}  // namespace craft::server
