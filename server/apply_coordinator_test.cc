#include "server/apply_coordinator.h"

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "server/internal/test_support.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"
#include "wire/limits.h"

namespace craft::server {
namespace {

using testing::AckOf;
using testing::FakeConnection;
using ::testing::HasSubstr;
using testing::Hello;
using testing::NackOf;
using testing::ReplicatedLayout;
using testing::SmallConfig;
using ::testing::UnorderedElementsAre;

// An InMemoryStateStore whose saves can be held at a gate: a barrier
// between the thread that persists a commit and the test, which meanwhile
// calls into the coordinator. A held save gives up waiting after a few
// seconds, so that a test whose call waited for the save fails (gave_up)
// instead of hanging.
class GatedStateStore : public InMemoryStateStore {
 public:
  // The next saves wait at the gate until Release.
  void Hold() {
    absl::MutexLock lock(&gate_mu_);
    held_ = true;
  }
  // Blocks until a save waits at the gate.
  void AwaitHeldSave() {
    absl::MutexLock lock(&gate_mu_);
    gate_mu_.Await(absl::Condition(&waiting_));
  }
  void Release() {
    absl::MutexLock lock(&gate_mu_);
    held_ = false;
  }
  bool gave_up() const {
    absl::MutexLock lock(&gate_mu_);
    return gave_up_;
  }

  absl::Status Save(const PlannerState& state) override {
    {
      absl::MutexLock lock(&gate_mu_);
      waiting_ = held_;
      if (!gate_mu_.AwaitWithTimeout(absl::Condition(
                                         +[](bool* held) { return !*held; }, &held_),
                                     absl::Seconds(5))) {
        gave_up_ = true;
      }
      waiting_ = false;
    }
    return InMemoryStateStore::Save(state);
  }

 private:
  mutable absl::Mutex gate_mu_;
  bool held_ ABSL_GUARDED_BY(gate_mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(gate_mu_) = false;
  bool gave_up_ ABSL_GUARDED_BY(gate_mu_) = false;
};

class ApplyCoordinatorTest : public ::testing::Test {
 protected:
  ApplyCoordinatorTest() { Restart(); }

  // A new coordinator (a planner restart) on the same state store.
  void Restart() {
    const PlannerConfig config = SmallConfig();
    history_ = std::make_unique<LayoutHistory>(8);
    coordinator_.reset();
    absl::StatusOr<std::unique_ptr<ApplyCoordinator>> created = ApplyCoordinator::Create(
        {config.model, config.cluster, config.apply_timeout}, &store_, history_.get(), &clock_);
    ASSERT_TRUE(created.ok()) << created.status();
    coordinator_ = *std::move(created);
    ApplyCoordinator::Hooks hooks;
    hooks.on_commit = [this](const CommittedLayout& committed, int64_t) {
      commits_.push_back(committed.version);
    };
    hooks.on_deadline_changed = [this] { ++deadline_hooks_; };
    coordinator_->SetHooks(std::move(hooks));
    a_ = std::make_shared<FakeConnection>();
    b_ = std::make_shared<FakeConnection>();
  }

  // Nodes "a" (GPUs 0, 1) and "b" (GPUs 2, 3) connect serving `version`.
  void ConnectBoth(const std::string& version = "") {
    ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}, version), a_).ok());
    ASSERT_TRUE(coordinator_->Connect(Hello("b", {2, 3}, version), b_).ok());
  }

  std::string StartReplicated() {
    absl::StatusOr<std::string> version = coordinator_->StartApply(ReplicatedLayout());
    EXPECT_TRUE(version.ok()) << version.status();
    return version.ok() ? *version : "";
  }

  void Ack(const std::string& node, const std::shared_ptr<FakeConnection>& connection,
           craft::v1::AckPhase phase) {
    coordinator_->HandleAck(node, connection.get(), AckOf(connection->last(), phase));
  }

  // `version` was aborted, for a reason naming `why`, on every connection
  // in `told`, and the committed layout is still the initial one.
  void ExpectAborted(const std::string& version,
                     const std::vector<std::shared_ptr<FakeConnection>>& told,
                     const std::string& why) {
    for (const auto& connection : told) {
      ASSERT_TRUE(connection->last().has_abort());
      EXPECT_EQ(connection->last().abort().version(), version);
    }
    EXPECT_EQ(coordinator_->committed().version, "0.0");
    EXPECT_FALSE(coordinator_->apply_in_progress());
    EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr(why));
  }

  // Runs a whole apply of ReplicatedLayout() to the end.
  std::string ApplyReplicated() {
    const std::string version = StartReplicated();
    Ack("a", a_, craft::v1::PREPARED);
    Ack("b", b_, craft::v1::PREPARED);
    Ack("a", a_, craft::v1::COMMITTED);
    Ack("b", b_, craft::v1::COMMITTED);
    return version;
  }

  FakeClock clock_;
  GatedStateStore store_;
  std::unique_ptr<LayoutHistory> history_;
  std::unique_ptr<ApplyCoordinator> coordinator_;
  std::shared_ptr<FakeConnection> a_;
  std::shared_ptr<FakeConnection> b_;
  std::vector<std::string> commits_;
  int deadline_hooks_ = 0;
};

// The resync a node gets: a Commit of `version` that carries its layout.
void ExpectResync(const FakeConnection& connection, const std::string& version) {
  const craft::v1::PlannerMessage message = connection.last();
  ASSERT_TRUE(message.has_commit()) << message.ShortDebugString();
  EXPECT_EQ(message.commit().version(), version);
  EXPECT_EQ(message.commit().layout().version(), version);
  EXPECT_GT(message.commit().layout().layers_size(), 0);
}

TEST_F(ApplyCoordinatorTest, FreshPlannerStartsAtEpochOneWithTheInitialLayout) {
  EXPECT_EQ(coordinator_->epoch(), 1);
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  EXPECT_EQ((*store_.Load())->epoch, 1);  // persisted before anything is minted
  EXPECT_NE(history_->Find("0.0"), nullptr);
}

TEST_F(ApplyCoordinatorTest, HappyPathPreparesCommitsAndPersists) {
  ConnectBoth();
  // Each agent learns the epoch as soon as its hello is accepted.
  EXPECT_EQ(a_->welcomes(), 1);
  EXPECT_EQ(b_->welcomes(), 1);
  const std::string version = StartReplicated();
  EXPECT_EQ(version, "1.1");
  EXPECT_EQ(coordinator_->pending_version(), "1.1");

  const craft::v1::PlannerMessage prepare_a = a_->last();
  ASSERT_TRUE(prepare_a.has_prepare());
  EXPECT_EQ(prepare_a.epoch(), 1);
  EXPECT_EQ(PrepareVersion(prepare_a.prepare()), "1.1");
  EXPECT_EQ(prepare_a.prepare().bytes_per_expert(), 1000);
  EXPECT_EQ(prepare_a.prepare().timeout_ms(), 5000);
  ASSERT_GT(prepare_a.prepare().transfers_size(), 0);
  std::set<int> named;
  for (const craft::v1::Transfer& transfer : prepare_a.prepare().transfers()) {
    EXPECT_TRUE(transfer.src_gpu() <= 1 || transfer.dst_gpu() <= 1) << transfer.DebugString();
    EXPECT_EQ(transfer.src_version(), "0.0");
    named.insert({transfer.src_gpu(), transfer.dst_gpu()});
  }
  // Endpoints and node names of exactly the GPUs its transfers name.
  EXPECT_EQ(prepare_a.prepare().gpu_endpoints().size(), named.size());
  for (int gpu : named) {
    EXPECT_EQ(prepare_a.prepare().gpu_endpoints().at(gpu),
              "127.0.0.1:" + std::to_string(20000 + gpu));
    EXPECT_EQ(prepare_a.prepare().gpu_nodes().at(gpu), gpu <= 1 ? "a" : "b");
  }
  EXPECT_NE(a_->last().nonce(), b_->last().nonce());

  Ack("a", a_, craft::v1::PREPARED);
  EXPECT_TRUE(a_->last().has_prepare()) << "no commit before every agent is prepared";
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  Ack("b", b_, craft::v1::PREPARED);

  // The commit point: persisted, then Commit to every agent.
  EXPECT_EQ(coordinator_->committed().version, "1.1");
  EXPECT_EQ((*store_.Load())->committed.version(), "1.1");
  EXPECT_EQ(commits_, std::vector<std::string>{"1.1"});
  ASSERT_TRUE(a_->last().has_commit());
  EXPECT_EQ(a_->last().commit().version(), "1.1");
  EXPECT_NE(history_->Find("1.1"), nullptr);
  EXPECT_TRUE(coordinator_->apply_in_progress());

  Ack("a", a_, craft::v1::COMMITTED);
  Ack("b", b_, craft::v1::COMMITTED);
  EXPECT_FALSE(coordinator_->apply_in_progress());
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
  for (const AgentSnapshot& agent : coordinator_->Agents()) {
    EXPECT_EQ(agent.serving_version, "1.1");
  }
  EXPECT_EQ(coordinator_->stats().applies_committed, 1);
}

TEST_F(ApplyCoordinatorTest, NackAbortsAndKeepsTheOldLayout) {
  ConnectBoth();
  const std::string version = StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  coordinator_->HandleNack("b", b_.get(), NackOf(b_->last(), craft::v1::WORKER_FAILED, "0.0"));
  ExpectAborted(version, {a_, b_}, "node b refused");
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("WORKER_FAILED"));
  EXPECT_TRUE(commits_.empty());
}

TEST_F(ApplyCoordinatorTest, PrepareTimeoutAborts) {
  ConnectBoth();
  StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  clock_.Advance(absl::Seconds(4));
  coordinator_->CheckTimeouts();
  EXPECT_TRUE(b_->last().has_prepare()) << "aborted before the deadline";
  EXPECT_EQ(coordinator_->NextDeadline(), clock_.Now() + absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  coordinator_->CheckTimeouts();
  EXPECT_TRUE(a_->last().has_abort());
  EXPECT_TRUE(b_->last().has_abort());
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("timed out"));
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("[b]"));
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  EXPECT_FALSE(coordinator_->NextDeadline().has_value());
}

TEST_F(ApplyCoordinatorTest, DisconnectDuringPrepareAborts) {
  ConnectBoth();
  StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  coordinator_->Disconnect("b", b_.get());
  EXPECT_TRUE(a_->last().has_abort());
  EXPECT_TRUE(b_->last().has_prepare()) << "nothing is sent to a disconnected agent";
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("node b disconnected"));
  EXPECT_EQ(coordinator_->committed().version, "0.0");
}

TEST_F(ApplyCoordinatorTest, DisconnectAfterTheCommitPointDoesNotUndoIt) {
  ConnectBoth();
  StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  Ack("b", b_, craft::v1::PREPARED);
  coordinator_->Disconnect("b", b_.get());
  Ack("a", a_, craft::v1::COMMITTED);
  EXPECT_EQ(coordinator_->committed().version, "1.1");
  EXPECT_FALSE(coordinator_->apply_in_progress());
}

TEST_F(ApplyCoordinatorTest, StaleNoncesAndOldStreamsAreIgnored) {
  ConnectBoth();
  const std::string version = StartReplicated();
  craft::v1::Ack stale = AckOf(a_->last(), craft::v1::PREPARED);
  stale.set_nonce("1-999");
  coordinator_->HandleAck("a", a_.get(), stale);
  craft::v1::Ack wrong_version = AckOf(b_->last(), craft::v1::PREPARED);
  wrong_version.set_version("0.7");
  coordinator_->HandleAck("b", b_.get(), wrong_version);
  // A Nack with an old nonce must not abort.
  craft::v1::Nack stale_nack = NackOf(b_->last(), craft::v1::WORKER_FAILED, "0.0");
  stale_nack.set_nonce("1-998");
  coordinator_->HandleNack("b", b_.get(), stale_nack);
  // An answer from a connection that is not the node's current one.
  FakeConnection impostor;
  coordinator_->HandleAck("a", &impostor, AckOf(a_->last(), craft::v1::PREPARED));

  EXPECT_EQ(coordinator_->pending_version(), version);
  EXPECT_EQ(coordinator_->stats().stale_answers_ignored, 3);
  Ack("a", a_, craft::v1::PREPARED);
  Ack("b", b_, craft::v1::PREPARED);
  EXPECT_EQ(coordinator_->committed().version, version);
}

TEST_F(ApplyCoordinatorTest, VersionsAreNeverReusedAcrossAbortsAndRestarts) {
  ConnectBoth();
  std::vector<std::string> versions;
  versions.push_back(StartReplicated());
  coordinator_->HandleNack("a", a_.get(), NackOf(a_->last(), craft::v1::TIMEOUT, "0.0"));
  versions.push_back(StartReplicated());
  Restart();  // the second apply was never finished
  ConnectBoth();
  EXPECT_EQ(coordinator_->epoch(), 2);
  versions.push_back(StartReplicated());
  EXPECT_THAT(versions, UnorderedElementsAre("1.1", "1.2", "2.1"));
}

TEST_F(ApplyCoordinatorTest, RestartKeepsTheCommittedVersion) {
  ConnectBoth();
  const std::string version = ApplyReplicated();
  Restart();
  EXPECT_EQ(coordinator_->epoch(), 2);
  EXPECT_EQ(coordinator_->committed().version, version);
  EXPECT_EQ(*coordinator_->committed().layout, ReplicatedLayout());
  // Agents coming back with the committed version are in sync: nothing moves.
  ConnectBoth(version);
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
  EXPECT_TRUE(a_->sent().empty());
  EXPECT_EQ(StartReplicated(), "2.2");  // seq continues after the stored one
}

TEST_F(ApplyCoordinatorTest, RestartAtTheCommitPointReDrivesTheCommit) {
  ConnectBoth();
  const std::string first = ApplyReplicated();
  // The next apply reaches the commit point, then the planner dies before
  // any Commit left: both agents are in doubt about 1.2, serving `first`.
  absl::StatusOr<planner::Layout> initial = planner::ContiguousLayout(2, 4, {4, 2});
  ASSERT_TRUE(coordinator_->StartApply(*initial).ok());
  Ack("a", a_, craft::v1::PREPARED);
  Ack("b", b_, craft::v1::PREPARED);
  Restart();
  EXPECT_EQ(coordinator_->committed().version, "1.2");
  for (auto [name, gpus, connection] : {std::make_tuple("a", std::vector<int>{0, 1}, a_),
                                        std::make_tuple("b", std::vector<int>{2, 3}, b_)}) {
    craft::v1::AgentHello hello = Hello(name, gpus, first);
    hello.set_prepared_version("1.2");
    ASSERT_TRUE(coordinator_->Connect(hello, connection).ok());
    ExpectResync(*connection, "1.2");  // not gated by any modelled gain
  }
  EXPECT_GE(deadline_hooks_, 2);
  EXPECT_THAT(coordinator_->OutOfSyncNodes(), UnorderedElementsAre("a", "b"));
  // No new apply until every node is on the committed version.
  EXPECT_EQ(coordinator_->StartApply(ReplicatedLayout()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  coordinator_->HandleAck("a", a_.get(), AckOf(a_->last(), craft::v1::COMMITTED));
  EXPECT_THAT(coordinator_->OutOfSyncNodes(), UnorderedElementsAre("b"));
  coordinator_->HandleAck("b", b_.get(), AckOf(b_->last(), craft::v1::COMMITTED));
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
  EXPECT_EQ(coordinator_->stats().resyncs_completed, 2);
  absl::StatusOr<std::string> next = coordinator_->StartApply(ReplicatedLayout());
  ASSERT_TRUE(next.ok()) << next.status();
  const craft::v1::PlannerMessage prepare = b_->last();
  for (const craft::v1::Transfer& transfer : prepare.prepare().transfers()) {
    EXPECT_EQ(transfer.src_version(), "1.2");
  }
}

TEST_F(ApplyCoordinatorTest, AnInDoubtVersionThatWasNeverCommittedIsAborted) {
  ConnectBoth();
  StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  Restart();  // before the commit point: 1.1 is dead
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.set_prepared_version("1.1");
  ASSERT_TRUE(coordinator_->Connect(hello, a_).ok());
  ASSERT_TRUE(a_->last().has_abort());
  EXPECT_EQ(a_->last().abort().version(), "1.1");
  EXPECT_EQ(coordinator_->stats().in_doubt_aborted, 1);
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
}

TEST_F(ApplyCoordinatorTest, ANodeBackOnAnOldLayoutIsResyncedUntilItAnswers) {
  ConnectBoth();
  const std::string committed = ApplyReplicated();
  // Node b restarted with its workers and comes back on the initial layout.
  auto b_again = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(Hello("b", {2, 3}, "0.0"), b_again).ok());
  ExpectResync(*b_again, committed);
  EXPECT_TRUE(a_->sent().back().has_commit()) << "node a got nothing new";
  EXPECT_EQ(a_->sent().size(), 2u);
  // A worker is still missing: refused. Re-driven after resync_retry, not before.
  craft::v1::Nack missing = NackOf(b_again->last(), craft::v1::WORKER_MISSING, committed);
  missing.mutable_error()->add_gpus()->set_gpu(3);
  coordinator_->HandleNack("b", b_again.get(), missing);
  EXPECT_EQ(coordinator_->stats().resyncs_failed, 1);
  const size_t sent = b_again->sent().size();
  clock_.Advance(absl::Seconds(1));
  coordinator_->CheckTimeouts();
  EXPECT_EQ(b_again->sent().size(), sent);
  ASSERT_TRUE(coordinator_->NextDeadline().has_value());
  clock_.Advance(absl::Seconds(1));
  coordinator_->CheckTimeouts();
  ASSERT_EQ(b_again->sent().size(), sent + 1);
  ExpectResync(*b_again, committed);
  coordinator_->HandleAck("b", b_again.get(), AckOf(b_again->last(), craft::v1::COMMITTED));
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
  EXPECT_FALSE(coordinator_->NextDeadline().has_value());
}

TEST_F(ApplyCoordinatorTest, GpusThatDidNotFlipAreResyncedAfterTheApply) {
  ConnectBoth();
  const std::string version = StartReplicated();
  Ack("a", a_, craft::v1::PREPARED);
  Ack("b", b_, craft::v1::PREPARED);
  Ack("a", a_, craft::v1::COMMITTED);
  craft::v1::Nack nack = NackOf(b_->last(), craft::v1::WORKER_MISSING, version);
  nack.mutable_error()->add_gpus()->set_gpu(3);
  coordinator_->HandleNack("b", b_.get(), nack);
  EXPECT_FALSE(coordinator_->apply_in_progress());
  ExpectResync(*b_, version);
  EXPECT_THAT(coordinator_->OutOfSyncNodes(), UnorderedElementsAre("b"));
  // ListAgents shows which GPU lags.
  for (const AgentSnapshot& agent : coordinator_->Agents()) {
    if (agent.node != "b") continue;
    EXPECT_EQ(agent.gpu_versions, (std::vector<std::string>{version, ""}));
  }
}

TEST_F(ApplyCoordinatorTest, TheWelcomeStatesTheModelToAnAgentThatLeavesItOpen) {
  // An agent without model flags states none: it learns the model here.
  craft::v1::AgentHello open = Hello("a", {0, 1});
  open.clear_model();
  ASSERT_TRUE(coordinator_->Connect(open, a_).ok());
  ASSERT_EQ(a_->welcomes(), 1);
  const craft::v1::ModelShape model = a_->last_welcome().model();
  const ModelShape want = SmallConfig().model;
  EXPECT_EQ(model.num_layers(), want.num_layers);
  EXPECT_EQ(model.num_experts(), want.num_experts);
  EXPECT_EQ(model.top_k(), want.top_k);
  EXPECT_EQ(model.bytes_per_expert(), want.bytes_per_expert);
  // Flags for some fields only: those must match, the rest are the planner's.
  craft::v1::AgentHello partial = Hello("b", {2, 3});
  partial.mutable_model()->set_top_k(0);
  partial.mutable_model()->set_bytes_per_expert(0);
  EXPECT_TRUE(coordinator_->Connect(partial, b_).ok());
  partial.mutable_model()->set_num_layers(want.num_layers + 1);
  absl::Status status = coordinator_->Connect(partial, b_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("model shape mismatch"));
}

TEST_F(ApplyCoordinatorTest, ASecondStreamOfANodeReplacesTheFirst) {
  ConnectBoth();
  StartReplicated();
  auto a_again = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_again).ok());
  ASSERT_TRUE(a_->closed().has_value());
  EXPECT_EQ(a_->closed()->code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(a_->last().has_abort()) << "the prepare it took part in is aborted";
  EXPECT_FALSE(coordinator_->apply_in_progress());
  // The old stream's end does not disconnect the new one.
  coordinator_->Disconnect("a", a_.get());
  EXPECT_TRUE(coordinator_->GpusWithoutAgent().empty());
}

TEST_F(ApplyCoordinatorTest, ApplyNeedsAnAgentForEveryGpu) {
  ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_).ok());
  absl::StatusOr<std::string> version = coordinator_->StartApply(ReplicatedLayout());
  EXPECT_EQ(version.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(version.status().message(), HasSubstr("GPUs [2,3] have no connected agent"));
}

TEST_F(ApplyCoordinatorTest, OneApplyAtATime) {
  ConnectBoth();
  StartReplicated();
  EXPECT_EQ(coordinator_->StartApply(ReplicatedLayout()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ApplyCoordinatorTest, LayoutOfAnotherShapeIsRejected) {
  ConnectBoth();
  absl::StatusOr<planner::Layout> other = planner::ContiguousLayout(3, 4, {4, 2});
  EXPECT_EQ(coordinator_->StartApply(*other).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ApplyCoordinatorTest, FailingToPersistTheCommitAborts) {
  ConnectBoth();
  StartReplicated();
  store_.set_fail_saves(true);
  Ack("a", a_, craft::v1::PREPARED);
  Ack("b", b_, craft::v1::PREPARED);
  EXPECT_TRUE(a_->last().has_abort());
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  EXPECT_THAT(coordinator_->last_abort_reason(), HasSubstr("cannot persist"));
}

// An apply of ReplicatedLayout() that node a has PREPARED; node b's PREPARED
// comes from another thread, whose save of the commit the store holds.
class PersistingTest : public ApplyCoordinatorTest {
 protected:
  void SetUp() override {
    ConnectBoth();
    version_ = StartReplicated();
    Ack("a", a_, craft::v1::PREPARED);
  }
  // A test that stopped half-way still lets the persisting thread end.
  void TearDown() override {
    if (persisting_.joinable()) ReleaseTheSave();
  }

  // Node b answers PREPARED, as the last agent: the commit is persisted on
  // that thread, and its save waits at the store's gate when this returns.
  void HoldTheSave() {
    store_.Hold();
    const craft::v1::Ack prepared = AckOf(b_->last(), craft::v1::PREPARED);
    persisting_ =
        std::thread([this, b = b_, prepared] { coordinator_->HandleAck("b", b.get(), prepared); });
    store_.AwaitHeldSave();
  }

  // Lets the save return, then waits for the commit to be published (or
  // aborted). Fails when a call made meanwhile waited for the save.
  void ReleaseTheSave() {
    store_.Release();
    persisting_.join();
    EXPECT_FALSE(store_.gave_up()) << "a call waited for the save";
  }

  std::string version_;
  std::thread persisting_;
};

TEST_F(PersistingTest, LoadsHellosAndViewsDoNotWaitForTheSave) {
  HoldTheSave();
  // Each call takes the coordinator's mutex; none may wait for the save.
  craft::v1::NodeLoad load;
  craft::v1::StagingHeadroom* headroom = load.add_headroom();
  headroom->set_gpu(1);
  headroom->set_bytes(123);
  coordinator_->OnLoad("a", a_.get(), load);
  EXPECT_EQ(coordinator_->MinStagingHeadroom(), 123);
  EXPECT_EQ(coordinator_->Agents().size(), 2u);
  EXPECT_EQ(coordinator_->Connect(Hello("c", {0}), std::make_shared<FakeConnection>()).code(),
            absl::StatusCode::kAlreadyExists);
  // Not committed before the save returns, and no other apply starts.
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  EXPECT_EQ(coordinator_->pending_version(), version_);
  EXPECT_TRUE(coordinator_->apply_in_progress());
  EXPECT_EQ(coordinator_->StartApply(ReplicatedLayout()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(coordinator_->NextDeadline().has_value()) << "nothing to wake the loop for";
  ReleaseTheSave();
  EXPECT_EQ(coordinator_->committed().version, version_);
  EXPECT_EQ((*store_.Load())->committed.version(), version_);
  EXPECT_TRUE(a_->last().has_commit());
  EXPECT_TRUE(b_->last().has_commit());
  EXPECT_EQ(commits_, std::vector<std::string>{version_});
}

TEST_F(PersistingTest, EventsDuringTheSaveDoNotBreakTheCommit) {
  HoldTheSave();
  // A late Nack of the prepare (node a already answered it): ignored.
  coordinator_->HandleNack("a", a_.get(), NackOf(a_->last(), craft::v1::WORKER_FAILED, "0.0"));
  // The prepare's deadline passes: the save decides, not the clock.
  clock_.Advance(absl::Seconds(10));
  coordinator_->CheckTimeouts();
  // Node b's stream ends and the node comes back, in doubt about the
  // version: neither an Abort of it nor a resync to the old layout.
  coordinator_->Disconnect("b", b_.get());
  auto b_again = std::make_shared<FakeConnection>();
  craft::v1::AgentHello hello = Hello("b", {2, 3}, "0.0");
  hello.set_prepared_version(version_);
  ASSERT_TRUE(coordinator_->Connect(hello, b_again).ok());
  EXPECT_TRUE(b_again->sent().empty());
  EXPECT_TRUE(a_->last().has_prepare());
  EXPECT_FALSE(coordinator_->NextDeadline().has_value());
  const int deadline_hooks = deadline_hooks_;
  ReleaseTheSave();

  EXPECT_EQ(coordinator_->committed().version, version_);
  EXPECT_EQ(coordinator_->stats().applies_aborted, 0);
  EXPECT_EQ(coordinator_->stats().stale_answers_ignored, 1);
  ASSERT_TRUE(a_->last().has_commit());
  EXPECT_TRUE(b_->last().has_prepare()) << "nothing is sent to a stream that ended";
  ExpectResync(*b_again, version_);  // the node commits it from its staging
  EXPECT_GT(deadline_hooks_, deadline_hooks) << "the loop must look at the new deadlines";
  // Node b left the apply: node a's answer finishes it.
  Ack("a", a_, craft::v1::COMMITTED);
  EXPECT_FALSE(coordinator_->apply_in_progress());
  coordinator_->HandleAck("b", b_again.get(), AckOf(b_again->last(), craft::v1::COMMITTED));
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
}

TEST_F(PersistingTest, ADrainDuringTheSaveLeavesTheCommitToIt) {
  HoldTheSave();
  coordinator_->BeginDrain();
  EXPECT_TRUE(a_->last().has_prepare()) << "no Abort of a version being persisted";
  ReleaseTheSave();
  EXPECT_EQ(coordinator_->committed().version, version_);
  EXPECT_TRUE(a_->last().has_commit());
  EXPECT_TRUE(b_->last().has_commit());
}

TEST_F(PersistingTest, AFailedSaveAbortsCleanlyWhateverCameMeanwhile) {
  store_.set_fail_saves(true);
  HoldTheSave();
  // Node b comes back on a new stream, in doubt about the version.
  auto b_again = std::make_shared<FakeConnection>();
  craft::v1::AgentHello hello = Hello("b", {2, 3}, "0.0");
  hello.set_prepared_version(version_);
  ASSERT_TRUE(coordinator_->Connect(hello, b_again).ok());
  EXPECT_TRUE(b_again->sent().empty());
  ReleaseTheSave();

  ExpectAborted(version_, {a_, b_again}, "cannot persist");
  EXPECT_EQ(coordinator_->stats().aborts_by_reason[static_cast<int>(AbortReason::kPersistFailed)],
            1);
  EXPECT_TRUE(commits_.empty());
  // Nothing is wedged: once the store saves again, the next apply commits.
  store_.set_fail_saves(false);
  b_ = b_again;
  const std::string next = ApplyReplicated();
  EXPECT_EQ(coordinator_->committed().version, next);
}

TEST_F(ApplyCoordinatorTest, NoDeadlineForAResyncThatWouldNotGoOut) {
  ConnectBoth();
  // Node a comes back on another version, claiming a newer epoch: it is not
  // resynced (it would refuse), so the loop has nothing to wake up for.
  auto claimant = std::make_shared<FakeConnection>();
  craft::v1::AgentHello hello = Hello("a", {0, 1}, "7.3");
  hello.set_highest_epoch(7);
  ASSERT_TRUE(coordinator_->Connect(hello, claimant).ok());
  EXPECT_TRUE(claimant->sent().empty());
  EXPECT_FALSE(coordinator_->NextDeadline().has_value());
}

TEST_F(ApplyCoordinatorTest, AStaleEpochNackFencesOnlyWhileThatNodeSaysSo) {
  ConnectBoth();
  StartReplicated();
  coordinator_->HandleNack("a", a_.get(), NackOf(a_->last(), craft::v1::STALE_EPOCH, "0.0"));
  EXPECT_TRUE(coordinator_->fenced());
  EXPECT_TRUE(b_->last().has_abort());
  absl::Status refused = coordinator_->StartApply(ReplicatedLayout()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("nodes [a] have seen a newer planner epoch"));
  // One stray NACK does not fence for good: the node's next hello says
  // what it has really seen.
  auto a_again = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_again).ok());
  EXPECT_FALSE(coordinator_->fenced());
  EXPECT_TRUE(coordinator_->StartApply(ReplicatedLayout()).ok());
}

TEST_F(ApplyCoordinatorTest, AHelloClaimingAHigherEpochFencesOnlyWhileConnected) {
  ConnectBoth();
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.set_highest_epoch(int64_t{1} << 62);
  auto claimant = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(hello, claimant).ok());
  EXPECT_TRUE(coordinator_->fenced());
  EXPECT_EQ(coordinator_->epoch(), 1) << "a claim changes nothing persisted";
  coordinator_->Disconnect("a", claimant.get());
  EXPECT_FALSE(coordinator_->fenced());
  ASSERT_TRUE(coordinator_->Connect(Hello("a", {0, 1}), a_).ok());
  EXPECT_TRUE(coordinator_->StartApply(ReplicatedLayout()).ok());
}

TEST_F(ApplyCoordinatorTest, DrainAbortsAPrepareAndRefusesAgents) {
  ConnectBoth();
  StartReplicated();
  coordinator_->BeginDrain();
  EXPECT_TRUE(a_->last().has_abort());
  EXPECT_EQ(coordinator_->Connect(Hello("c", {0}), std::make_shared<FakeConnection>()).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ApplyCoordinatorTest, PreparesCarryTheTransferGroupIdRankZeroAnnounced) {
  // None known (CPU backends): Prepares carry none.
  ConnectBoth();
  StartReplicated();
  EXPECT_EQ(a_->last().prepare().transfer_group_id(), "");
  EXPECT_EQ(b_->last().prepare().transfer_group_id(), "");
  coordinator_->HandleNack("a", a_.get(), NackOf(a_->last(), craft::v1::WORKER_FAILED, "0.0"));
  // Rank 0's id (AgentRegistry::Register says which one counts) reaches
  // every agent's Prepare, also node b's, which has no transfer with rank 0
  // but joins the same communicator.
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  const std::string id(kTransferGroupIdBytes, 'x');
  hello.mutable_gpus(0)->set_transfer_group_id(id);
  a_ = std::make_shared<FakeConnection>();
  ASSERT_TRUE(coordinator_->Connect(hello, a_).ok());
  StartReplicated();
  EXPECT_EQ(a_->last().prepare().transfer_group_id(), id);
  EXPECT_EQ(b_->last().prepare().transfer_group_id(), id);
}

TEST_F(ApplyCoordinatorTest, AHelloTheRegistryRefusesRegistersNothing) {
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.mutable_gpus(0)->set_transfer_group_id("12345");
  EXPECT_EQ(coordinator_->Connect(hello, a_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(coordinator_->Agents().empty());
  EXPECT_EQ(a_->welcomes(), 0);
  // The planner keeps serving: the same node connects with a good hello.
  ConnectBoth();
  EXPECT_EQ(a_->welcomes(), 1);
}

TEST_F(ApplyCoordinatorTest, NodesTheRegistryForgotCanComeBack) {
  ConnectBoth();  // the cluster has 2 nodes: both are known
  // Names come and go on b's GPUs, each forgetting the one before.
  coordinator_->Disconnect("b", b_.get());
  for (const std::string name : {"c", "d", "b"}) {
    auto connection = std::make_shared<FakeConnection>();
    ASSERT_TRUE(coordinator_->Connect(Hello(name, {2, 3}), connection).ok()) << name;
    if (name != "b") coordinator_->Disconnect(name, connection.get());
    b_ = connection;
  }
  EXPECT_EQ(coordinator_->Agents().size(), 2u);
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());
  const std::string version = ApplyReplicated();
  EXPECT_EQ(coordinator_->committed().version, version);
}

// 64 experts per layer: layouts big enough that a delta is the smaller
// message (proto/README.md, "Layout deltas").
class DeltaPrepareTest : public ::testing::Test {
 protected:
  DeltaPrepareTest() : history_(8) {
    config_ = SmallConfig();
    config_.model.num_experts = 64;
    coordinator_ = *ApplyCoordinator::Create(
        {config_.model, config_.cluster, config_.apply_timeout}, &store_, &history_, &clock_);
    Connect("a", {0, 1}, a_);
    Connect("b", {2, 3}, b_);
  }

  void Connect(const std::string& node, const std::vector<int>& gpus,
               const std::shared_ptr<FakeConnection>& connection, const std::string& version = "") {
    craft::v1::AgentHello hello = Hello(node, gpus, version);
    hello.mutable_model()->set_num_experts(64);
    ASSERT_TRUE(coordinator_->Connect(hello, connection).ok());
  }

  // The committed layout plus a replica of `expert` in layer 0 on `gpu`.
  planner::Layout WithReplica(int expert, int gpu) const {
    planner::Layout layout = *coordinator_->committed().layout;
    planner::LayerPlacement& layer = layout.layers[0];
    layer.phy2log.insert(layer.phy2log.begin() + layer.SlotOffset(gpu), expert);
    ++layer.slots_per_gpu[gpu];
    return layout;
  }

  std::string Start(const planner::Layout& layout) {
    absl::StatusOr<std::string> version = coordinator_->StartApply(layout);
    EXPECT_TRUE(version.ok()) << version.status();
    return version.ok() ? *version : "";
  }

  void Answer(craft::v1::AckPhase phase) {
    for (const auto& [node, connection] : {std::pair{"a", a_}, std::pair{"b", b_}}) {
      coordinator_->HandleAck(node, connection.get(), AckOf(connection->last(), phase));
    }
  }

  PlannerConfig config_;
  FakeClock clock_;
  InMemoryStateStore store_;
  LayoutHistory history_;
  std::unique_ptr<ApplyCoordinator> coordinator_;
  std::shared_ptr<FakeConnection> a_ = std::make_shared<FakeConnection>();
  std::shared_ptr<FakeConnection> b_ = std::make_shared<FakeConnection>();
};

TEST_F(DeltaPrepareTest, EveryNodeGetsTheDeltaAndOnlyItsOwnTransfers) {
  const planner::Layout base = *coordinator_->committed().layout;
  // Expert 5 lives on GPU 0 (node a); its new replica goes to GPU 1 (node a).
  const planner::Layout target = WithReplica(5, 1);
  const std::string version = Start(target);
  for (const auto& connection : {a_, b_}) {
    const craft::v1::Prepare prepare = connection->last().prepare();
    ASSERT_TRUE(prepare.has_layout_delta());
    EXPECT_FALSE(prepare.has_layout());
    EXPECT_EQ(prepare.layout_delta().base_version(), "0.0");
    EXPECT_EQ(prepare.layout_delta().version(), version);
    EXPECT_EQ(*ApplyLayoutDelta(base, prepare.layout_delta()), target);
    EXPECT_LT(prepare.layout_delta().ByteSizeLong(),
              LayoutToProto(target, version).ByteSizeLong() / 2);
  }
  // Copies between GPUs of node a only (slots that shift within a GPU are
  // copies from the GPU itself).
  const craft::v1::Prepare on_a = a_->last().prepare();
  ASSERT_GT(on_a.transfers_size(), 0);
  for (const craft::v1::Transfer& transfer : on_a.transfers()) {
    EXPECT_LE(transfer.src_gpu(), 1);
    EXPECT_LE(transfer.dst_gpu(), 1);
  }
  EXPECT_EQ(on_a.gpu_endpoints().size(), 2u);
  EXPECT_EQ(on_a.gpu_nodes().at(0), "a");
  EXPECT_EQ(on_a.gpu_nodes().at(1), "a");
  // Node b moves nothing: the layout, and no transfer or endpoint.
  const craft::v1::Prepare on_b = b_->last().prepare();
  EXPECT_EQ(on_b.transfers_size(), 0);
  EXPECT_TRUE(on_b.gpu_endpoints().empty());
  EXPECT_TRUE(on_b.gpu_nodes().empty());
}

TEST_F(DeltaPrepareTest, ANodeThatRefusedADeltaGetsTheFullLayoutUntilItCommits) {
  Start(WithReplica(5, 1));
  // Node b's copy of 0.0 is not the planner's: the fingerprint differed.
  coordinator_->HandleNack("b", b_.get(), NackOf(b_->last(), craft::v1::BAD_LAYOUT, "0.0"));
  EXPECT_EQ(coordinator_->committed().version, "0.0");
  EXPECT_TRUE(coordinator_->OutOfSyncNodes().empty());

  const planner::Layout target = WithReplica(9, 2);
  const std::string version = Start(target);
  EXPECT_TRUE(a_->last().prepare().has_layout_delta());
  const craft::v1::Prepare full = b_->last().prepare();
  ASSERT_FALSE(full.has_layout_delta());
  EXPECT_EQ(full.layout().version(), version);
  EXPECT_EQ(*LayoutFromProto(full.layout()), target);
  Answer(craft::v1::PREPARED);
  Answer(craft::v1::COMMITTED);
  ASSERT_EQ(coordinator_->committed().version, version);

  // It holds the planner's layout now: deltas again, from the new version.
  Start(WithReplica(7, 3));
  ASSERT_TRUE(b_->last().prepare().has_layout_delta());
  EXPECT_EQ(b_->last().prepare().layout_delta().base_version(), version);
}

TEST_F(DeltaPrepareTest, AReconnectingNodeOnAnotherVersionGetsTheFullLayout) {
  const std::string first = Start(WithReplica(5, 1));
  Answer(craft::v1::PREPARED);
  Answer(craft::v1::COMMITTED);
  // Node b restarted on the initial layout: the resync carries the whole
  // committed layout, never a delta (its base would be 0.0).
  auto b_again = std::make_shared<FakeConnection>();
  Connect("b", {2, 3}, b_again, "0.0");
  const craft::v1::PlannerMessage resync = b_again->last();
  ASSERT_TRUE(resync.has_commit());
  EXPECT_EQ(resync.commit().layout().version(), first);
  EXPECT_EQ(*LayoutFromProto(resync.commit().layout()), *coordinator_->committed().layout);
  coordinator_->HandleAck("b", b_again.get(), AckOf(resync, craft::v1::COMMITTED));
  ASSERT_TRUE(coordinator_->OutOfSyncNodes().empty());

  b_ = b_again;
  Start(WithReplica(9, 2));
  ASSERT_TRUE(b_->last().prepare().has_layout_delta());
  EXPECT_EQ(b_->last().prepare().layout_delta().base_version(), first);
}

}  // namespace
}  // namespace craft::server
