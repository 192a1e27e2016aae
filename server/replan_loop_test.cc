#include "server/replan_loop.h"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/internal/test_support.h"

namespace craft::server {
namespace {

using ::testing::ElementsAre;
using testing::FakeConnection;
using ::testing::HasSubstr;
using testing::Hello;
using ::testing::IsEmpty;
using testing::SkewedLoads;
using testing::SmallConfig;
using ::testing::StartsWith;

// The fresh method: a new plan, stabilised, through the gain gate.
PlannerConfig FreshConfig() {
  PlannerConfig config = SmallConfig();
  config.replan_method = ReplanMethod::kFresh;
  return config;
}

// A fake clock that moves 1 ms forward on every reading, so that every timed
// stage of a replan takes time.
class TickingClock : public Clock {
 public:
  explicit TickingClock(FakeClock* clock) : clock_(clock) {}
  absl::Time Now() const override {
    clock_->Advance(absl::Milliseconds(1));
    return clock_->Now();
  }
  bool SleepUntil(absl::Time deadline, absl::Mutex* mu, const bool* cancelled) override {
    return clock_->SleepUntil(deadline, mu, cancelled);
  }

 private:
  FakeClock* const clock_;
};

std::vector<std::string> StageNames(const ReplanOutcome& outcome) {
  std::vector<std::string> names;
  for (const StageTime& stage : outcome.stage_times) {
    names.emplace_back(ReplanStageName(stage.stage));
  }
  return names;
}

class ReplanLoopTest : public ::testing::Test {
 protected:
  ReplanLoopTest() : history_(8) { Build(FreshConfig()); }

  // The loop reads `loop_clock` (default: clock_, as the coordinator does).
  void Build(const PlannerConfig& config, Clock* loop_clock = nullptr) {
    config_ = config;
    loop_.reset();
    coordinator_.reset();
    store_ = std::make_unique<InMemoryStateStore>();  // a fresh planner: epoch 1
    load_store_ = std::make_unique<LoadStore>(
        LoadStoreOptions{config.model.num_layers, config.model.num_experts, config.cluster,
                         config.window_horizon, config.decay},
        &history_);
    coordinator_ = *ApplyCoordinator::Create({config.model, config.cluster, config.apply_timeout},
                                             store_.get(), &history_, &clock_);
    loop_ = std::make_unique<ReplanLoop>(config, load_store_.get(), coordinator_.get(),
                                         loop_clock != nullptr ? loop_clock : &clock_);
  }

  void ConnectBoth(const std::string& b_version = "") {
    ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_).ok());
    ASSERT_TRUE(coordinator_->Connect(Hello("b", {2, 3}, b_version), b_).ok());
  }

  // Every GPU reports `count` windows of `loads` under the committed layout.
  void Report(const std::vector<std::vector<int64_t>>& loads, int count = 4) {
    const CommittedLayout committed = coordinator_->committed();
    for (int id = 0; id < count; ++id) {
      for (int gpu = 0; gpu < 4; ++gpu) {
        ASSERT_TRUE(load_store_
                        ->Ingest(testing::Window(*committed.layout, committed.version, gpu,
                                                 next_window_, loads))
                        .ok());
      }
      ++next_window_;
    }
  }

  // Waits (real time, bounded) for `done`.
  template <typename Predicate>
  bool Eventually(Predicate done) {
    for (int i = 0; i < 2000 && !done(); ++i) absl::SleepFor(absl::Milliseconds(1));
    return done();
  }

  PlannerConfig config_;
  FakeClock clock_;
  TickingClock ticking_clock_{&clock_};
  std::unique_ptr<InMemoryStateStore> store_;
  LayoutHistory history_;
  std::unique_ptr<LoadStore> load_store_;
  std::unique_ptr<ApplyCoordinator> coordinator_;
  std::unique_ptr<ReplanLoop> loop_;
  std::shared_ptr<FakeConnection> a_ = std::make_shared<FakeConnection>();
  std::shared_ptr<FakeConnection> b_ = std::make_shared<FakeConnection>();
  int64_t next_window_ = 0;
};

TEST_F(ReplanLoopTest, NothingToPlanWithoutCompleteWindows) {
  ConnectBoth();
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_THAT(outcome.decision, HasSubstr("no complete load window"));
  EXPECT_THAT(outcome.version, IsEmpty());
  EXPECT_EQ(loop_->LastExplain().decision(), outcome.decision);
}

TEST_F(ReplanLoopTest, SkippedWhileAGpuHasNoAgent) {
  ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_).ok());
  const ReplanOutcome outcome = loop_->RunOnce(true);
  EXPECT_THAT(outcome.decision, HasSubstr("GPUs [2,3] have no connected agent"));
  EXPECT_THAT(outcome.stage_times, IsEmpty()) << "skipped before taking the trace";
}

TEST_F(ReplanLoopTest, APushedReplanTimesEveryStageOnTheLoopClock) {
  Build(FreshConfig(), &ticking_clock_);
  ConnectBoth();
  Report(SkewedLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  EXPECT_THAT(StageNames(outcome), ElementsAre("trace", "plan", "evaluate", "prepare"));
  for (const StageTime& stage : outcome.stage_times) {
    EXPECT_GT(stage.duration, absl::ZeroDuration()) << ReplanStageName(stage.stage);
  }
}

TEST_F(ReplanLoopTest, SkewedLoadsPassTheGateAndStartAnApply) {
  ConnectBoth();
  Report(SkewedLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_THAT(outcome.decision, StartsWith("pushing: modelled gain"));
  EXPECT_EQ(outcome.version, "1.1");
  EXPECT_EQ(coordinator_->pending_version(), "1.1");
  ASSERT_TRUE(a_->last().has_prepare());

  const craft::v1::ExplainResponse explain = loop_->LastExplain();
  EXPECT_EQ(explain.algorithm(), "craft");
  EXPECT_EQ(explain.budget(), 1);
  EXPECT_EQ(explain.version(), "1.1");
  ASSERT_EQ(explain.layers_size(), 2);
  EXPECT_GT(explain.layers(0).candidate_replicas_size(), 1);
  EXPECT_EQ(explain.layers(0).candidate_replicas_size(),
            explain.layers(0).predicted_balancedness_size());
  EXPECT_GT(explain.layers(0).chosen_replicas() + explain.layers(1).chosen_replicas(), 0);
  EXPECT_NEAR(explain.layers(0).measured_balancedness(), 1075.0 / 4000, 1e-9);
  EXPECT_GT(explain.predicted_balancedness(), explain.layers(0).measured_balancedness());

  // The next replan waits for this apply.
  EXPECT_THAT(loop_->RunOnce(true).decision, HasSubstr("an apply is in progress"));
}

// Under the roofline objective the gate weighs modelled milliseconds: with
// large batches the skewed loads still pay, but where every slot costs the
// same weight read whatever its tokens, a replica only adds time.
TEST_F(ReplanLoopTest, UnderRooflineTheGateWeighsModelledMilliseconds) {
  planner::RooflineParams params;
  params.fixed_us = 30;
  params.per_token_us = 0.1;
  PlannerConfig config = FreshConfig();
  config.plan.objective = planner::CraftObjective::kRoofline;
  config.plan.roofline.emplace(params, planner::Regime{65536, 2});
  Build(config);
  ConnectBoth();
  Report(SkewedLoads());
  const ReplanOutcome prefill = loop_->RunOnce(false);
  EXPECT_THAT(prefill.decision, StartsWith("pushing: modelled gain"));
  EXPECT_THAT(prefill.decision, HasSubstr(" ms, "));
  // Explain gives every layer's modelled ms, per candidate and as committed;
  // the chosen count is modelled faster than the committed layout.
  const craft::v1::ExplainResponse explain = loop_->LastExplain();
  ASSERT_GT(explain.layers_size(), 0);
  for (const craft::v1::LayerPlan& layer : explain.layers()) {
    ASSERT_EQ(layer.predicted_ms_size(), layer.candidate_replicas_size());
    EXPECT_GT(layer.committed_ms(), 0);
    for (int k = 0; k < layer.candidate_replicas_size(); ++k) {
      if (layer.candidate_replicas(k) == layer.chosen_replicas() && layer.layer() == 0) {
        EXPECT_LT(layer.predicted_ms(k), layer.committed_ms());
      }
    }
  }

  params.fixed_us = 1000;
  params.per_token_us = 1e-6;
  config.plan.roofline.emplace(params, planner::Regime{64, 2});
  Build(config);
  ConnectBoth();
  Report(SkewedLoads());
  EXPECT_THAT(loop_->RunOnce(false).decision, StartsWith("not pushing, gain below threshold"));
}

TEST_F(ReplanLoopTest, BalancedLoadsAreNotPushed) {
  ConnectBoth();
  Report({{1000, 1000, 1000, 1000}, {1000, 1000, 1000, 1000}});
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_THAT(outcome.decision, StartsWith("not pushing, gain below threshold"));
  EXPECT_THAT(outcome.version, IsEmpty());
  EXPECT_TRUE(a_->sent().empty());
}

TEST_F(ReplanLoopTest, GainBelowThresholdIsNotPushedUnlessForced) {
  PlannerConfig config = FreshConfig();
  config.gain_threshold = 0.99;
  Build(config);
  ConnectBoth();
  Report(SkewedLoads());
  EXPECT_THAT(loop_->RunOnce(false).decision, HasSubstr("gain below threshold"));
  const ReplanOutcome forced = loop_->RunOnce(true);
  EXPECT_THAT(forced.decision, StartsWith("forced push (gate bypassed)"));
  EXPECT_EQ(forced.version, "1.1");
}

TEST_F(ReplanLoopTest, TransferCostAboveTheBenefitIsNotPushed) {
  PlannerConfig config = FreshConfig();
  config.horizon_s = 1e-9;  // the gain lasts a nanosecond: never worth a transfer
  Build(config);
  ConnectBoth();
  Report(SkewedLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_THAT(outcome.decision, HasSubstr("benefit below transfer cost"));
  EXPECT_THAT(outcome.version, IsEmpty());
}

// The incremental method on a model with room to move: 16 experts, R = 4.
class IncrementalReplanTest : public ReplanLoopTest {
 protected:
  IncrementalReplanTest() {
    PlannerConfig config = SmallConfig();
    config.model.num_experts = 16;
    config.plan.budget = 4;
    Build(config);
  }

  void ConnectBoth16() {
    for (const auto& [node, connection, gpus] : {std::tuple{"a", a_, std::vector<int>{0, 1}},
                                                 std::tuple{"b", b_, std::vector<int>{2, 3}}}) {
      craft::v1::AgentHello hello = Hello(node, gpus);
      hello.mutable_model()->set_num_experts(16);
      ASSERT_TRUE(coordinator_->Connect(hello, connection).ok());
    }
  }

  // A few hot experts per layer.
  static std::vector<std::vector<int64_t>> HotLoads() {
    std::vector<std::vector<int64_t>> loads(2, std::vector<int64_t>(16, 100));
    loads[0][3] = loads[0][7] = 3000;
    loads[1][0] = loads[1][12] = 2500;
    loads[1][5] = 1500;
    return loads;
  }

  // Answers the apply in progress: PREPARED, then COMMITTED, from both nodes.
  void Commit() {
    for (auto phase : {craft::v1::PREPARED, craft::v1::COMMITTED}) {
      for (const auto& [node, connection] : {std::pair{"a", a_}, std::pair{"b", b_}}) {
        coordinator_->HandleAck(node, connection.get(), testing::AckOf(connection->last(), phase));
      }
    }
    ASSERT_FALSE(coordinator_->apply_in_progress());
  }

  // Every GPU of a node reports `bytes` of staging headroom.
  void ReportHeadroom(int64_t bytes) {
    for (const auto& [node, connection, gpus] : {std::tuple{"a", a_, std::vector<int>{0, 1}},
                                                 std::tuple{"b", b_, std::vector<int>{2, 3}}}) {
      craft::v1::NodeLoad load;
      for (int gpu : gpus) {
        craft::v1::StagingHeadroom* headroom = load.add_headroom();
        headroom->set_gpu(gpu);
        headroom->set_bytes(bytes);
      }
      coordinator_->OnLoad(node, connection.get(), load);
    }
  }
};

TEST_F(IncrementalReplanTest, PushesTheBestFrontierPointAndExplainsIt) {
  ConnectBoth16();
  Report(HotLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  EXPECT_THAT(outcome.decision, StartsWith("pushing: frontier point"));
  EXPECT_THAT(outcome.decision, HasSubstr("one step"));
  const craft::v1::ExplainResponse explain = loop_->LastExplain();
  EXPECT_EQ(explain.method(), "incremental");
  ASSERT_GT(explain.frontier_size(), 1);
  int chosen = 0;
  for (const craft::v1::FrontierPoint& point : explain.frontier()) chosen += point.chosen();
  EXPECT_EQ(chosen, 1);
  EXPECT_EQ(explain.frontier(0).net_benefit_s(), 0);
  EXPECT_EQ(explain.staging_headroom_bytes(), -1) << "no worker reported a limit";
  EXPECT_FALSE(loop_->Continuing());
}

TEST_F(IncrementalReplanTest, APushedReplanTimesEveryStageOnTheLoopClock) {
  const PlannerConfig config = config_;
  Build(config, &ticking_clock_);
  ConnectBoth16();
  Report(HotLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  EXPECT_THAT(StageNames(outcome), ElementsAre("trace", "plan", "evaluate", "prepare"));
  for (const StageTime& stage : outcome.stage_times) {
    EXPECT_GT(stage.duration, absl::ZeroDuration()) << ReplanStageName(stage.stage);
  }
}

TEST_F(IncrementalReplanTest, AMoveBiggerThanTheHeadroomIsAppliedAsSeveralVersions) {
  ConnectBoth16();
  ReportHeadroom(1000);  // one expert (bytes_per_expert 1000) into a GPU per step
  Report(HotLoads());
  std::vector<std::string> versions;
  ReplanOutcome outcome = loop_->RunOnce(false);
  while (outcome.result == ReplanResult::kPushed) {
    versions.push_back(outcome.version);
    // Each apply brings at most one expert from another GPU into each GPU (a
    // transfer between nodes is in both nodes' Prepares: count it once).
    std::set<std::tuple<int, int, int>> arrivals;  // (dst GPU, layer, dst slot)
    for (const auto& connection : {a_, b_}) {
      const craft::v1::PlannerMessage prepare = connection->last();
      for (const craft::v1::Transfer& t : prepare.prepare().transfers()) {
        if (t.src_gpu() != t.dst_gpu()) arrivals.insert({t.dst_gpu(), t.layer(), t.dst_slot()});
      }
    }
    std::map<int, int> per_gpu;
    for (const auto& [gpu, layer, slot] : arrivals) ++per_gpu[gpu];
    for (const auto& [gpu, count] : per_gpu) EXPECT_LE(count, 1) << "gpu " << gpu;
    Commit();
    if (!loop_->Continuing()) break;
    outcome = loop_->RunOnce(false);
    EXPECT_THAT(outcome.decision, StartsWith("continuing towards frontier point"));
  }
  EXPECT_GT(versions.size(), 1u) << outcome.decision;
  EXPECT_EQ(coordinator_->committed().version, versions.back());
  EXPECT_EQ(loop_->LastExplain().staging_headroom_bytes(), 1000);
}

TEST_F(IncrementalReplanTest, AHeadroomBelowOneExpertFailsClearly) {
  ConnectBoth16();
  ReportHeadroom(999);
  Report(HotLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_EQ(outcome.result, ReplanResult::kFailed);
  EXPECT_THAT(outcome.decision, HasSubstr("staging headroom"));
  EXPECT_FALSE(loop_->Continuing());
}

TEST_F(IncrementalReplanTest, UniformConfigsCommitLayoutsEnginesLoad) {
  PlannerConfig config = SmallConfig();
  config.model.num_experts = 16;
  config.plan.uniform = true;
  config.plan.redundant_per_layer = 4;  // 20 slots per layer, 5 on each GPU
  Build(config);
  ConnectBoth16();
  Report(HotLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  Commit();
  const planner::Layout& committed = *coordinator_->committed().layout;
  EXPECT_TRUE(committed.HasUniformSlots());
  for (const planner::LayerPlacement& layer : committed.layers) EXPECT_EQ(layer.num_slots(), 20);
  EXPECT_EQ(loop_->LastExplain().budget(), 2);  // 4 x 2 layers / 4 GPUs
}

TEST_F(IncrementalReplanTest, AMoveThatDoesNotPayIsNotPushed) {
  PlannerConfig config = SmallConfig();
  config.model.num_experts = 16;
  config.plan.budget = 4;
  config.horizon_s = 1e-9;
  Build(config);
  ConnectBoth16();
  Report(HotLoads());
  const ReplanOutcome outcome = loop_->RunOnce(false);
  EXPECT_EQ(outcome.result, ReplanResult::kGated);
  EXPECT_THAT(outcome.decision, HasSubstr("no move pays for itself"));
  EXPECT_TRUE(a_->sent().empty());
}

// 2 layers x 5 experts on 4 GPUs: the initial layout's 10 slots cannot be
// spread evenly, and incremental moves keep each GPU's total.
TEST_F(IncrementalReplanTest, TheFirstPlanIsFreshWhenTheInitialTotalsDiffer) {
  PlannerConfig config = SmallConfig();
  config.model.num_experts = 5;
  config.plan.budget = 2;
  Build(config);
  for (const auto& [node, connection, gpus] :
       {std::tuple{"a", a_, std::vector<int>{0, 1}}, std::tuple{"b", b_, std::vector<int>{2, 3}}}) {
    craft::v1::AgentHello hello = Hello(node, gpus);
    hello.mutable_model()->set_num_experts(5);
    ASSERT_TRUE(coordinator_->Connect(hello, connection).ok());
  }
  const std::vector<std::vector<int64_t>> loads = {{3000, 100, 100, 100, 800},
                                                   {100, 2500, 100, 1200, 100}};
  Report(loads);
  ReplanOutcome outcome = loop_->RunOnce(/*force=*/true);
  ASSERT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
  EXPECT_EQ(loop_->LastExplain().method(), "fresh");
  Commit();
  Report(loads);
  outcome = loop_->RunOnce(/*force=*/true);
  EXPECT_NE(outcome.result, ReplanResult::kFailed) << outcome.decision;
  EXPECT_EQ(loop_->LastExplain().method(), "incremental");
}

TEST_F(ReplanLoopTest, NothingIsPlannedWhileANodeIsBeingResynced) {
  ConnectBoth();
  Report(SkewedLoads());
  const std::string committed = loop_->RunOnce(false).version;
  for (const auto& [node, connection] : {std::pair{"a", a_}, std::pair{"b", b_}}) {
    coordinator_->HandleAck(node, connection.get(),
                            testing::AckOf(connection->last(), craft::v1::PREPARED));
  }
  for (const auto& [node, connection] : {std::pair{"a", a_}, std::pair{"b", b_}}) {
    coordinator_->HandleAck(node, connection.get(),
                            testing::AckOf(connection->last(), craft::v1::COMMITTED));
  }
  ASSERT_EQ(coordinator_->committed().version, committed);
  // Node b's workers restart on the initial layout: the coordinator re-drives
  // the commit itself, whatever the gate would say, and the loop waits.
  auto b_again = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(Hello("b", {2, 3}, "0.0"), b_again).ok());
  EXPECT_EQ(b_again->last().commit().version(), committed);

  ReplanOutcome outcome = loop_->RunOnce(/*force=*/true);
  EXPECT_EQ(outcome.result, ReplanResult::kSkipped);
  EXPECT_THAT(outcome.decision, HasSubstr("nodes [b] are being resynchronised"));
  EXPECT_THAT(outcome.version, IsEmpty());
  coordinator_->HandleAck("b", b_again.get(),
                          testing::AckOf(b_again->last(), craft::v1::COMMITTED));
  outcome = loop_->RunOnce(/*force=*/true);
  EXPECT_EQ(outcome.result, ReplanResult::kPushed) << outcome.decision;
}

TEST_F(ReplanLoopTest, TheThreadReplansOnTriggerAndEveryInterval) {
  ConnectBoth();
  loop_->Start();
  loop_->Trigger();
  EXPECT_TRUE(Eventually([&] { return !loop_->LastExplain().decision().empty(); }));
  Report(SkewedLoads());
  clock_.Advance(config_.replan_interval);
  EXPECT_TRUE(Eventually([&] { return coordinator_->apply_in_progress(); }));
  // The loop also enforces the apply timeout (and, the interval having
  // passed too, re-plans right after).
  clock_.Advance(config_.apply_timeout);
  EXPECT_TRUE(Eventually([&] { return coordinator_->stats().applies_aborted == 1; }));
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("timed out"));
  loop_->Stop();
}

TEST_F(ReplanLoopTest, JobsRunOnTheLoopAndAreCancelledOnStop) {
  loop_->Start();
  absl::Notification ran;
  ASSERT_TRUE(loop_->Post([&](bool run) {
    EXPECT_TRUE(run);
    ran.Notify();
  }));
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(2)));
  loop_->Stop();
  EXPECT_FALSE(loop_->Post([](bool) {}));
}

TEST_F(ReplanLoopTest, QueuedJobsOfAStoppedLoopAreToldNotToRun) {
  int cancelled = 0;
  for (int i = 0; i < ReplanLoop::kMaxQueuedJobs; ++i) {
    ASSERT_TRUE(loop_->Post([&](bool run) { cancelled += run ? 0 : 1; }));
  }
  EXPECT_FALSE(loop_->Post([](bool) {})) << "the queue is bounded";
  loop_->Stop();  // never started
  EXPECT_EQ(cancelled, ReplanLoop::kMaxQueuedJobs);
}

}  // namespace
}  // namespace craft::server
