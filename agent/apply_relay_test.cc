// The apply relay against fake channels and a FakeClock.
#include "agent/apply_relay.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/test_util.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"

namespace craft::agent {
namespace {

using craft::v1::AgentMessage;
using testing::FakePlanner;
using testing::FakeWorker;
using testing::Hello;
using testing::kExperts;
using testing::kLayers;
using testing::PrepareMessage;
using testing::Status;

craft::v1::PlannerMessage CommitMessage(int64_t epoch, const std::string& nonce,
                                        const std::string& version) {
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  message.mutable_commit()->set_version(version);
  return message;
}

// A Commit the planner re-drives for its committed version: with the layout.
craft::v1::PlannerMessage ResyncMessage(int64_t epoch, const std::string& nonce,
                                        const std::string& version) {
  craft::v1::PlannerMessage message = CommitMessage(epoch, nonce, version);
  *message.mutable_commit()->mutable_layout() =
      PrepareMessage(epoch, nonce, version).prepare().layout();
  return message;
}

// The initial layout of these tests' node: 2 GPUs, one node.
planner::Layout InitialLayout() { return *planner::ContiguousLayout(kLayers, kExperts, {2, 1}); }

// `base` with a replica of `expert` added on `gpu` in layer 0.
planner::Layout WithReplica(planner::Layout base, int expert, int gpu) {
  planner::LayerPlacement& layer = base.layers[0];
  layer.phy2log.insert(layer.phy2log.begin() + layer.SlotOffset(gpu), expert);
  ++layer.slots_per_gpu[gpu];
  return base;
}

// A Prepare as the planner sends it to a node on `base_version`: a delta.
craft::v1::PlannerMessage DeltaPrepareMessage(int64_t epoch, const std::string& nonce,
                                              const planner::Layout& base,
                                              const std::string& base_version,
                                              const planner::Layout& target,
                                              const std::string& version) {
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  *message.mutable_prepare()->mutable_layout_delta() =
      *MakeLayoutDelta(base, base_version, target, version);
  return message;
}

// The planner's shape in these tests: the workers' (Hello) with a size.
craft::v1::ModelShape PlannerModel(int num_layers = kLayers) {
  craft::v1::ModelShape model;
  model.set_num_layers(num_layers);
  model.set_num_experts(kExperts);
  model.set_top_k(2);
  model.set_bytes_per_expert(1000);
  return model;
}

craft::v1::PlannerMessage WelcomeMessage(int64_t epoch, const craft::v1::ModelShape& model) {
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce("w");
  *message.mutable_welcome()->mutable_model() = model;
  return message;
}

// A worker running the planner's model.
craft::v1::WorkerHello SizedHello(int gpu) {
  craft::v1::WorkerHello hello = Hello(gpu);
  hello.mutable_model()->set_bytes_per_expert(1000);
  return hello;
}

craft::v1::PlannerMessage AbortMessage(int64_t epoch, const std::string& nonce,
                                       const std::string& version) {
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  message.mutable_abort()->set_version(version);
  return message;
}

class ApplyRelayTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(&store_); }

  // A relay on what `store` holds, with a fresh registry of GPUs 0 and 1: an
  // agent (re)started. `flags`: the agent's --num_layers/--num_experts/--top_k.
  void Make(StateStore* store, ModelCheck flags = {kLayers, kExperts, 2}) {
    relay_.reset();
    workers_ = std::make_unique<WorkerRegistry>(std::vector<int>{0, 1});
    ApplyRelay::Options options;
    options.node = "node-a";
    options.model_check = flags;
    absl::StatusOr<std::unique_ptr<ApplyRelay>> relay =
        ApplyRelay::Create(options, &clock_, store, &planner_, workers_.get());
    ASSERT_TRUE(relay.ok()) << relay.status();
    relay_ = *std::move(relay);
  }

  void AttachBoth() {
    ASSERT_TRUE(relay_->AttachWorker(Hello(0), &worker0_).ok());
    ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  }

  const AgentMessage& LastSent() {
    EXPECT_FALSE(planner_.sent.empty());
    return planner_.sent.back();
  }

  void ExpectAck(const std::string& nonce, const std::string& version, craft::v1::AckPhase phase) {
    const AgentMessage& message = LastSent();
    ASSERT_TRUE(message.has_ack()) << message.ShortDebugString();
    EXPECT_EQ(message.ack().nonce(), nonce);
    EXPECT_EQ(message.ack().version(), version);
    EXPECT_EQ(message.ack().phase(), phase);
  }

  void ExpectNack(const std::string& nonce, craft::v1::ErrorCode code, const std::string& last_good,
                  std::vector<int> gpus = {}) {
    const AgentMessage& message = LastSent();
    ASSERT_TRUE(message.has_nack()) << message.ShortDebugString();
    EXPECT_EQ(message.nack().nonce(), nonce);
    EXPECT_EQ(message.nack().error().code(), code) << message.ShortDebugString();
    EXPECT_EQ(message.nack().last_good_version(), last_good);
    EXPECT_FALSE(message.nack().error().message().empty());
    std::vector<int> got;
    for (const auto& error : message.nack().error().gpus()) got.push_back(error.gpu());
    EXPECT_EQ(got, gpus) << message.ShortDebugString();
  }

  // Prepares and commits `version` under `epoch` with both workers.
  void Apply(int64_t epoch, const std::string& version) {
    relay_->OnPlannerMessage(PrepareMessage(epoch, "p" + version, version));
    relay_->OnWorkerStatus(0, Status(version, craft::v1::READY));
    relay_->OnWorkerStatus(1, Status(version, craft::v1::READY));
    ExpectAck("p" + version, version, craft::v1::PREPARED);
    relay_->OnPlannerMessage(CommitMessage(epoch, "c" + version, version));
    relay_->OnWorkerStatus(0, Status(version, craft::v1::FLIPPED));
    relay_->OnWorkerStatus(1, Status(version, craft::v1::FLIPPED));
    ExpectAck("c" + version, version, craft::v1::COMMITTED);
  }

  FakeClock clock_;
  MemoryStateStore store_;
  FakePlanner planner_;
  FakeWorker worker0_, worker1_;
  std::unique_ptr<WorkerRegistry> workers_;
  std::unique_ptr<ApplyRelay> relay_;
};

TEST_F(ApplyRelayTest, HappyPrepareAndCommit) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ASSERT_EQ(worker0_.received.size(), 1u);
  ASSERT_EQ(worker1_.received.size(), 1u);
  EXPECT_EQ(worker0_.received[0].prepare().layout().version(), "1.1");

  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  EXPECT_TRUE(planner_.sent.empty()) << "no ack before every worker is ready";
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("n1", "1.1", craft::v1::PREPARED);

  relay_->OnPlannerMessage(CommitMessage(1, "n2", "1.1"));
  ASSERT_EQ(worker0_.received.size(), 2u);
  EXPECT_EQ(worker0_.received[1].commit().version(), "1.1");
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(planner_.sent.size(), 1u);
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("n2", "1.1", craft::v1::COMMITTED);

  EXPECT_EQ(relay_->committed_version(), "1.1");
  EXPECT_FALSE(relay_->apply_pending());
  const AgentState saved = *store_.Load();
  EXPECT_EQ(saved.highest_epoch, 1);
  EXPECT_EQ(saved.committed_version, "1.1");
  ASSERT_TRUE(saved.committed_layout.has_value());
  EXPECT_EQ(saved.committed_layout->version(), "1.1");

  // A repeated commit of the committed version is acknowledged again.
  relay_->OnPlannerMessage(CommitMessage(1, "n3", "1.1"));
  ExpectAck("n3", "1.1", craft::v1::COMMITTED);
}

TEST_F(ApplyRelayTest, WorkerFailureNacksAndDropsStaging) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FAILED, "checksum mismatch"));
  ExpectNack("n1", craft::v1::WORKER_FAILED, "0.0", {1});
  EXPECT_EQ(LastSent().nack().error().gpus(0).message(), "checksum mismatch");
  EXPECT_EQ(LastSent().nack().version(), "1.1");
  ASSERT_EQ(worker0_.received.size(), 2u);
  EXPECT_EQ(worker0_.received[1].abort().version(), "1.1");

  // The planner's Abort that follows is acknowledged at once.
  relay_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
  // Late statuses of the dropped version are ignored.
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  EXPECT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(relay_->committed_version(), "0.0");
}

TEST_F(ApplyRelayTest, MissingWorkerNacksWithoutForwarding) {
  ASSERT_TRUE(relay_->AttachWorker(Hello(0), &worker0_).ok());
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ExpectNack("n1", craft::v1::WORKER_MISSING, "0.0", {1});
  EXPECT_TRUE(worker0_.received.empty());
  relay_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
}

TEST_F(ApplyRelayTest, WorkerDetachingDuringPrepareNacks) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->DetachWorker(1, &worker1_);
  ExpectNack("n1", craft::v1::WORKER_MISSING, "0.0", {1});
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  EXPECT_EQ(worker1_.received.size(), 1u) << "a detached worker is not written to";
}

TEST_F(ApplyRelayTest, StaleEpochIsRefusedWithoutAction) {
  AttachBoth();
  Apply(5, "5.1");
  const size_t commands = worker0_.received.size();
  relay_->OnPlannerMessage(PrepareMessage(4, "old", "4.9"));
  ExpectNack("old", craft::v1::STALE_EPOCH, "5.1");
  EXPECT_EQ(LastSent().nack().version(), "4.9");
  relay_->OnPlannerMessage(CommitMessage(4, "old2", "4.9"));
  ExpectNack("old2", craft::v1::STALE_EPOCH, "5.1");
  EXPECT_EQ(worker0_.received.size(), commands);
  EXPECT_EQ(relay_->highest_epoch(), 5);
  // A higher epoch is accepted and remembered.
  Apply(6, "6.1");
  EXPECT_EQ(relay_->highest_epoch(), 6);
  EXPECT_EQ(store_.Load()->highest_epoch, 6);
}

TEST_F(ApplyRelayTest, CommitOrAbortOfUnknownVersion) {
  AttachBoth();
  relay_->OnPlannerMessage(CommitMessage(1, "n1", "1.7"));
  ExpectNack("n1", craft::v1::UNKNOWN_VERSION, "0.0");
  relay_->OnPlannerMessage(AbortMessage(1, "n2", "1.7"));
  ExpectNack("n2", craft::v1::UNKNOWN_VERSION, "0.0");
  // Committing a version that is still being prepared is refused too.
  relay_->OnPlannerMessage(PrepareMessage(1, "n3", "1.8"));
  relay_->OnPlannerMessage(CommitMessage(1, "n4", "1.8"));
  ExpectNack("n4", craft::v1::UNKNOWN_VERSION, "0.0");
  EXPECT_TRUE(worker0_.received.back().has_prepare());
}

TEST_F(ApplyRelayTest, AbortWaitsForDropped) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  relay_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  EXPECT_EQ(worker1_.received.back().abort().version(), "1.1");
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  ExpectAck("n1", "1.1", craft::v1::PREPARED);
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::DROPPED));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
  EXPECT_EQ(relay_->committed_version(), "0.0");
  // Committing the aborted version is refused.
  relay_->OnPlannerMessage(CommitMessage(1, "n3", "1.1"));
  ExpectNack("n3", craft::v1::UNKNOWN_VERSION, "0.0");
}

TEST_F(ApplyRelayTest, StuckWorkerTimesOut) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1", /*timeout_ms=*/1000));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  clock_.Advance(absl::Milliseconds(999));
  relay_->Poll();
  EXPECT_TRUE(planner_.sent.empty());
  clock_.Advance(absl::Milliseconds(1));
  relay_->Poll();
  ExpectNack("n1", craft::v1::TIMEOUT, "0.0", {1});
  EXPECT_EQ(worker1_.received.back().abort().version(), "1.1");
  EXPECT_FALSE(relay_->apply_pending());
}

TEST_F(ApplyRelayTest, CommitTimesOutToo) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1", /*timeout_ms=*/500));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  clock_.Advance(absl::Seconds(10));  // no deadline while prepared: the planner decides
  relay_->Poll();
  ExpectAck("n1", "1.1", craft::v1::PREPARED);
  relay_->OnPlannerMessage(CommitMessage(1, "n2", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  clock_.Advance(absl::Milliseconds(500));
  relay_->Poll();
  ExpectNack("n2", craft::v1::TIMEOUT, "1.1", {1});
  EXPECT_EQ(relay_->committed_version(), "1.1") << "gpu 0 flipped: the node serves 1.1";
}

TEST_F(ApplyRelayTest, EpochAndVersionSurviveRestart) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/apply_relay_restart";
  std::remove(path.c_str());
  {
    FileStateStore store(path);
    Make(&store);
    AttachBoth();
    Apply(3, "3.1");
    relay_.reset();
  }
  FileStateStore store(path);
  Make(&store);
  EXPECT_EQ(relay_->highest_epoch(), 3);
  EXPECT_EQ(relay_->committed_version(), "3.1");
  const craft::v1::AgentHello hello = relay_->MakeHello();
  EXPECT_EQ(hello.highest_epoch(), 3);
  EXPECT_EQ(hello.committed_version(), "3.1");
  relay_->OnPlannerMessage(CommitMessage(2, "n", "2.5"));
  ExpectNack("n", craft::v1::STALE_EPOCH, "3.1");
}

TEST_F(ApplyRelayTest, BadLayoutsAreNacked) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "e", "1.1", 0, 2, /*num_experts=*/8));
  ExpectNack("e", craft::v1::BAD_LAYOUT, "0.0");
  relay_->OnPlannerMessage(PrepareMessage(1, "g", "1.2", 0, /*num_gpus=*/1, kExperts));
  ExpectNack("g", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage broken = PrepareMessage(1, "b", "1.3");
  broken.mutable_prepare()->mutable_layout()->mutable_layers(0)->set_phy2log(0, 99);
  relay_->OnPlannerMessage(broken);
  ExpectNack("b", craft::v1::BAD_LAYOUT, "0.0");
  relay_->OnPlannerMessage(PrepareMessage(1, "v", "bad version"));
  ExpectNack("v", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage transfer = PrepareMessage(1, "t", "1.4");
  craft::v1::Transfer* t = transfer.mutable_prepare()->add_transfers();
  t->set_layer(0);
  t->set_expert(3);
  t->set_dst_gpu(0);
  t->set_dst_slot(3);  // slot 3 is on gpu 1
  relay_->OnPlannerMessage(transfer);
  ExpectNack("t", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage empty;
  empty.set_epoch(1);
  empty.set_nonce("x");
  relay_->OnPlannerMessage(empty);
  ExpectNack("x", craft::v1::ERROR_CODE_UNSPECIFIED, "0.0");
  EXPECT_TRUE(worker0_.received.empty());
  // A version is never reused, even one that was refused.
  relay_->OnPlannerMessage(PrepareMessage(1, "again", "1.1"));
  ExpectNack("again", craft::v1::BAD_LAYOUT, "0.0");
}

TEST_F(ApplyRelayTest, ADeltaIsRebuiltFromTheCommittedLayoutAndForwardedInFull) {
  AttachBoth();
  const planner::Layout first = WithReplica(InitialLayout(), 1, 0);
  relay_->OnPlannerMessage(DeltaPrepareMessage(1, "d1", InitialLayout(), "0.0", first, "1.1"));
  ASSERT_EQ(worker0_.received.size(), 1u);
  const craft::v1::Prepare& forwarded = worker0_.received[0].prepare();
  EXPECT_FALSE(forwarded.has_layout_delta()) << "workers get the full layout";
  EXPECT_EQ(forwarded.layout().version(), "1.1");
  EXPECT_EQ(*LayoutFromProto(forwarded.layout()), first);
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("d1", "1.1", craft::v1::PREPARED);
  relay_->OnPlannerMessage(CommitMessage(1, "c1", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("c1", "1.1", craft::v1::COMMITTED);
  EXPECT_EQ(*LayoutFromProto(*store_.Load()->committed_layout), first);

  // The next delta's base is the committed 1.1.
  const planner::Layout second = WithReplica(first, 2, 1);
  relay_->OnPlannerMessage(DeltaPrepareMessage(1, "d2", first, "1.1", second, "1.2"));
  ASSERT_EQ(worker1_.received.size(), 3u);
  EXPECT_EQ(*LayoutFromProto(worker1_.received[2].prepare().layout()), second);
}

TEST_F(ApplyRelayTest, ADeltaThisNodeCannotRebuildIsNackedAndChangesNothing) {
  AttachBoth();
  Apply(1, "1.1");  // the initial layout's content, committed as 1.1
  const size_t commands = worker0_.received.size();
  const planner::Layout held = InitialLayout();
  // The planner's 1.1 has a replica on GPU 0 this node's 1.1 lacks; the
  // delta names GPU 1's list only.
  const planner::Layout planners = WithReplica(held, 0, 0);
  const planner::Layout target = WithReplica(planners, 3, 1);
  // Another base version than the committed one.
  relay_->OnPlannerMessage(DeltaPrepareMessage(1, "base", planners, "1.0", target, "1.2"));
  ExpectNack("base", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("full layout"), std::string::npos);
  // The committed version's name, another content: the fingerprint differs.
  relay_->OnPlannerMessage(DeltaPrepareMessage(1, "print", planners, "1.1", target, "1.3"));
  ExpectNack("print", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("fingerprint"), std::string::npos);
  // Malformed: a GPU the cluster does not have.
  craft::v1::PlannerMessage malformed =
      DeltaPrepareMessage(1, "gpu", planners, "1.1", target, "1.4");
  malformed.mutable_prepare()->mutable_layout_delta()->mutable_changed(0)->set_gpu(7);
  relay_->OnPlannerMessage(malformed);
  ExpectNack("gpu", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("gpu 7"), std::string::npos);
  EXPECT_EQ(worker0_.received.size(), commands) << "no worker heard of any of them";
  EXPECT_EQ(relay_->committed_version(), "1.1");
  EXPECT_FALSE(relay_->apply_pending());
  // The full layout still works.
  relay_->OnPlannerMessage(PrepareMessage(1, "full", "1.5"));
  EXPECT_EQ(worker0_.received.size(), commands + 1);
}

TEST_F(ApplyRelayTest, ADeltaFromTheInitialLayoutMustBeForThisNodesModel) {
  AttachBoth();
  const planner::Layout target = WithReplica(InitialLayout(), 1, 0);
  // The agent would build the initial layout of the delta's shape itself.
  craft::v1::PlannerMessage huge =
      DeltaPrepareMessage(1, "huge", InitialLayout(), "0.0", target, "1.1");
  huge.mutable_prepare()->mutable_layout_delta()->set_num_gpus(1 << 30);
  relay_->OnPlannerMessage(huge);
  ExpectNack("huge", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_NE(LastSent().nack().error().message().find("not this node's model"), std::string::npos);
  craft::v1::PlannerMessage layers =
      DeltaPrepareMessage(1, "layers", InitialLayout(), "0.0", target, "1.2");
  layers.mutable_prepare()->mutable_layout_delta()->set_num_layers(kLayers + 1);
  relay_->OnPlannerMessage(layers);
  ExpectNack("layers", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_TRUE(worker0_.received.empty());
}

TEST_F(ApplyRelayTest, NewPrepareSupersedesAndOneDuringCommitWaits) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "a", "1.1"));
  relay_->OnPlannerMessage(PrepareMessage(1, "b", "1.2"));
  ASSERT_EQ(worker0_.received.size(), 3u);
  EXPECT_EQ(worker0_.received[1].abort().version(), "1.1");
  EXPECT_EQ(worker0_.received[2].prepare().layout().version(), "1.2");
  relay_->OnWorkerStatus(0, Status("1.2", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.2", craft::v1::READY));
  ExpectAck("b", "1.2", craft::v1::PREPARED);
  relay_->OnPlannerMessage(CommitMessage(1, "c", "1.2"));
  relay_->OnPlannerMessage(PrepareMessage(1, "d", "1.3"));
  EXPECT_TRUE(worker0_.received.back().has_commit()) << "the prepare waits for the commit";
  relay_->OnWorkerStatus(0, Status("1.2", craft::v1::FLIPPED));
  relay_->OnWorkerStatus(1, Status("1.2", craft::v1::FLIPPED));
  ExpectAck("c", "1.2", craft::v1::COMMITTED);
  EXPECT_EQ(worker0_.received.back().prepare().layout().version(), "1.3");
}

TEST_F(ApplyRelayTest, LosingThePlannerKeepsAPreparedVersionInDoubt) {
  AttachBoth();
  relay_->OnPlannerConnected();
  relay_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("p", "1.1", craft::v1::PREPARED);
  // The planner may have passed the commit point before its stream ended:
  // nothing is dropped, and the next hello asks it what became of 1.1.
  relay_->OnPlannerDisconnected();
  EXPECT_EQ(worker0_.received.size(), 1u) << "no Abort forwarded";
  EXPECT_TRUE(relay_->apply_pending());
  EXPECT_EQ(relay_->MakeHello().prepared_version(), "1.1");
  EXPECT_EQ(relay_->MakeHello().committed_version(), "0.0");

  // A restarted planner (epoch 2) committed it: commit from staging.
  relay_->OnPlannerConnected();
  relay_->OnPlannerMessage(ResyncMessage(2, "r", "1.1"));
  EXPECT_EQ(store_.Load()->committed_version, "1.1") << "recorded before any worker flips";
  EXPECT_EQ(worker0_.received.back().commit().version(), "1.1");
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("r", "1.1", craft::v1::COMMITTED);
  EXPECT_EQ(relay_->MakeHello().prepared_version(), "");
}

TEST_F(ApplyRelayTest, AnInDoubtVersionThePlannerAbortedIsDropped) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  relay_->OnPlannerDisconnected();
  relay_->OnPlannerMessage(AbortMessage(2, "a", "1.1"));
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::DROPPED));
  ExpectAck("a", "1.1", craft::v1::ABORTED);
  EXPECT_FALSE(relay_->apply_pending());
}

TEST_F(ApplyRelayTest, AResyncBringsEveryWorkerToTheCommittedLayout) {
  AttachBoth();
  relay_->OnPlannerConnected();
  // This node never saw 3.4 (it restarted after losing the prepare, say).
  relay_->OnPlannerMessage(ResyncMessage(3, "r", "3.4"));
  const AgentState saved = *store_.Load();
  EXPECT_EQ(saved.committed_version, "3.4");
  ASSERT_TRUE(saved.committed_layout.has_value());
  for (FakeWorker* worker : {&worker0_, &worker1_}) {
    ASSERT_EQ(worker->received.size(), 1u);
    const craft::v1::Prepare& prepare = worker->received[0].prepare();
    EXPECT_EQ(prepare.layout().version(), "3.4");
    EXPECT_TRUE(prepare.load_missing_from_checkpoint());
    EXPECT_EQ(prepare.transfers_size(), 0);
  }
  relay_->OnWorkerStatus(0, Status("3.4", craft::v1::READY));
  EXPECT_EQ(worker0_.received.back().commit().version(), "3.4");
  relay_->OnWorkerStatus(0, Status("3.4", craft::v1::FLIPPED));
  EXPECT_TRUE(planner_.sent.empty()) << "answered only once every worker is on it";
  relay_->OnWorkerStatus(1, Status("3.4", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("3.4", craft::v1::FLIPPED));
  ExpectAck("r", "3.4", craft::v1::COMMITTED);
  EXPECT_EQ(relay_->stats().worker_resyncs_done, 2);
  // Asked again, in sync: answered at once, nothing sent to workers.
  relay_->OnPlannerMessage(ResyncMessage(3, "r2", "3.4"));
  ExpectAck("r2", "3.4", craft::v1::COMMITTED);
  EXPECT_EQ(worker0_.received.size(), 2u);
}

TEST_F(ApplyRelayTest, AWorkerThatComesBackIsBroughtToTheCommittedLayout) {
  AttachBoth();
  relay_->OnPlannerConnected();
  Apply(1, "1.1");
  relay_->DetachWorker(1, &worker1_);
  FakeWorker restarted;
  ASSERT_TRUE(relay_->AttachWorker(Hello(1, "0.0"), &restarted).ok());
  ASSERT_EQ(restarted.received.size(), 1u);
  EXPECT_EQ(restarted.received[0].prepare().layout().version(), "1.1");
  EXPECT_TRUE(restarted.received[0].prepare().load_missing_from_checkpoint());
  // A planner Prepare meanwhile is refused: the node is not all on 1.1 yet.
  relay_->OnPlannerMessage(PrepareMessage(1, "p2", "1.2"));
  ExpectNack("p2", craft::v1::WORKER_MISSING, "1.1", {1});
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(relay_->MakeHello().gpus(1).serving_version(), "1.1");
  EXPECT_EQ(relay_->stats().worker_resyncs_done, 1);
}

TEST_F(ApplyRelayTest, AnAgentRestartedMidCommitFinishesItFromItsState) {
  AttachBoth();
  relay_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  relay_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  relay_->OnPlannerMessage(CommitMessage(1, "c", "1.1"));
  // Crash: worker 0 flipped, worker 1 still has 1.1 staged.
  FakeWorker again0, again1;
  Make(&store_);
  ASSERT_TRUE(relay_->AttachWorker(Hello(0, "1.1"), &again0).ok());
  ASSERT_TRUE(relay_->AttachWorker(Hello(1, "0.0"), &again1).ok());
  EXPECT_TRUE(again0.received.empty());
  ASSERT_EQ(again1.received.size(), 1u);
  EXPECT_EQ(again1.received[0].prepare().layout().version(), "1.1");
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));  // staged already
  relay_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(relay_->MakeHello().committed_version(), "1.1");
  EXPECT_EQ(relay_->MakeHello().gpus(1).serving_version(), "1.1");
}

TEST_F(ApplyRelayTest, AFailedResyncIsRetriedAndTheAnswerSaysWhichGpuLags) {
  AttachBoth();
  relay_->OnPlannerConnected();
  relay_->OnPlannerMessage(ResyncMessage(2, "r", "2.1"));
  relay_->OnWorkerStatus(0, Status("2.1", craft::v1::READY));
  relay_->OnWorkerStatus(0, Status("2.1", craft::v1::FLIPPED));
  relay_->OnWorkerStatus(1, Status("2.1", craft::v1::FAILED, "out of memory"));
  ExpectNack("r", craft::v1::WORKER_MISSING, "2.1", {1});
  EXPECT_EQ(worker1_.received.back().abort().version(), "2.1");
  const size_t sent = worker1_.received.size();
  clock_.Advance(absl::Milliseconds(500));
  relay_->Poll();
  EXPECT_EQ(worker1_.received.size(), sent) << "not before the pause";
  clock_.Advance(absl::Milliseconds(600));
  relay_->Poll();
  ASSERT_EQ(worker1_.received.size(), sent + 1);
  EXPECT_EQ(worker1_.received.back().prepare().layout().version(), "2.1");
  EXPECT_EQ(relay_->stats().worker_resyncs_failed, 1);
}

TEST_F(ApplyRelayTest, AResyncWithABadLayoutIsRefused) {
  AttachBoth();
  craft::v1::PlannerMessage resync = ResyncMessage(2, "r", "2.1");
  resync.mutable_commit()->mutable_layout()->set_version("2.0");
  relay_->OnPlannerMessage(resync);
  ExpectNack("r", craft::v1::BAD_LAYOUT, "0.0");
  // A commit of an unknown version without a layout cannot be resynced.
  relay_->OnPlannerMessage(CommitMessage(2, "c", "2.2"));
  ExpectNack("c", craft::v1::UNKNOWN_VERSION, "0.0");
  EXPECT_EQ(store_.Load()->committed_version, "");
  EXPECT_TRUE(worker0_.received.empty());
}

TEST_F(ApplyRelayTest, LosingThePlannerDropsAnUncommittedApplyOnly) {
  AttachBoth();
  relay_->OnPlannerConnected();
  relay_->OnPlannerMessage(PrepareMessage(1, "a", "1.1"));
  relay_->OnPlannerDisconnected();
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  EXPECT_FALSE(relay_->apply_pending());
  EXPECT_EQ(relay_->committed_version(), "0.0");
}

TEST_F(ApplyRelayTest, AttachValidatesTheWorker) {
  EXPECT_EQ(relay_->AttachWorker(Hello(7), &worker0_).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(relay_->AttachWorker(Hello(0), &worker0_).ok());
  EXPECT_EQ(relay_->AttachWorker(Hello(0), &worker1_).code(), absl::StatusCode::kAlreadyExists);
  craft::v1::WorkerHello wrong = Hello(1);
  wrong.mutable_model()->set_num_layers(3);
  EXPECT_EQ(relay_->AttachWorker(wrong, &worker1_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(workers_->AllAttached());
  ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_TRUE(workers_->AllAttached());
  // Detaching with another stream's channel does nothing.
  relay_->DetachWorker(1, &worker0_);
  EXPECT_TRUE(workers_->AllAttached());
}

TEST_F(ApplyRelayTest, HelloDescribesTheNode) {
  ASSERT_TRUE(relay_->AttachWorker(Hello(1, "2.4"), &worker1_).ok());
  craft::v1::AgentHello hello = relay_->MakeHello();
  EXPECT_EQ(hello.node(), "node-a");
  ASSERT_EQ(hello.gpus_size(), 2);
  EXPECT_EQ(hello.gpus(0).rank(), 0);
  EXPECT_EQ(hello.gpus(0).transfer_endpoint(), "");
  EXPECT_EQ(hello.gpus(1).rank(), 1);
  EXPECT_EQ(hello.gpus(1).memory_bytes(), 1001);
  EXPECT_EQ(hello.gpus(1).transfer_endpoint(), "127.0.0.1:9001");
  EXPECT_EQ(hello.model().num_layers(), kLayers);
  EXPECT_EQ(hello.committed_version(), "2.4") << "learned from the workers";
  EXPECT_EQ(hello.gpus(1).serving_version(), "2.4");
  EXPECT_EQ(hello.highest_epoch(), 0);
}

TEST_F(ApplyRelayTest, AWorkerComingBackIsReannounced) {
  AttachBoth();
  (void)relay_->MakeHello();
  relay_->OnPlannerConnected();
  // The same worker re-attaching as before changes nothing.
  relay_->DetachWorker(1, &worker1_);
  ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 0);
  // A restarted worker (new endpoint) makes the planner's view stale.
  relay_->DetachWorker(1, &worker1_);
  craft::v1::WorkerHello restarted = Hello(1);
  restarted.set_transfer_endpoint("127.0.0.1:9999");
  ASSERT_TRUE(relay_->AttachWorker(restarted, &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  EXPECT_EQ(relay_->MakeHello().gpus(1).transfer_endpoint(), "127.0.0.1:9999");
}

TEST_F(ApplyRelayTest, AWorkerAttachingAfterTheNodeWasAnnouncedIsAnnounced) {
  // The agent stopped waiting for workers and said hello with GPU 0 only.
  ASSERT_TRUE(relay_->AttachWorker(Hello(0), &worker0_).ok());
  ASSERT_EQ(relay_->MakeHello().gpus(1).transfer_endpoint(), "");
  relay_->OnPlannerConnected();
  // GPU 1's late worker brings an endpoint the planner does not have.
  ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  EXPECT_EQ(relay_->MakeHello().gpus(1).transfer_endpoint(), "127.0.0.1:9001");
}

// A transfer group id of the right size (an ncclUniqueId), distinct per `fill`.
std::string GroupId(char fill) { return std::string(kTransferGroupIdBytes, fill); }

craft::v1::WorkerHello HelloWithGroup(int gpu, const std::string& id) {
  craft::v1::WorkerHello hello = Hello(gpu);
  hello.set_transfer_group_id(id);
  return hello;
}

TEST_F(ApplyRelayTest, TheTransferGroupIdOfAWorkerReachesItsGpuInfo) {
  ASSERT_TRUE(relay_->AttachWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  craft::v1::AgentHello hello = relay_->MakeHello();
  ASSERT_EQ(hello.gpus_size(), 2);
  EXPECT_EQ(hello.gpus(0).transfer_group_id(), GroupId('x'));
  EXPECT_EQ(hello.gpus(1).transfer_group_id(), "");
}

TEST_F(ApplyRelayTest, PreparesRelayTheTransferGroupIdToEveryWorker) {
  AttachBoth();
  craft::v1::PlannerMessage prepare = PrepareMessage(1, "n1", "1.1");
  prepare.mutable_prepare()->set_transfer_group_id(GroupId('x'));
  relay_->OnPlannerMessage(prepare);
  for (FakeWorker* worker : {&worker0_, &worker1_}) {
    ASSERT_EQ(worker->received.size(), 1u);
    EXPECT_EQ(worker->received[0].prepare().transfer_group_id(), GroupId('x'));
  }
}

TEST_F(ApplyRelayTest, ASecondHelloUpdatesTheGpuAndReannouncesWhatChanged) {
  ASSERT_TRUE(relay_->AttachWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  ASSERT_TRUE(relay_->AttachWorker(Hello(1), &worker1_).ok());
  (void)relay_->MakeHello();
  relay_->OnPlannerConnected();
  // The same hello again changes nothing the planner knows.
  ASSERT_TRUE(relay_->UpdateWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 0);
  // Rank 0's communicator was aborted: a new id, re-announced with a fresh
  // hello on a new stream.
  ASSERT_TRUE(relay_->UpdateWorker(HelloWithGroup(0, GroupId('y')), &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  craft::v1::AgentHello hello = relay_->MakeHello();
  EXPECT_EQ(hello.gpus(0).transfer_group_id(), GroupId('y'));
  EXPECT_EQ(hello.gpus(0).transfer_endpoint(), "127.0.0.1:9000");
  // Memory is announced too.
  craft::v1::WorkerHello less_memory = HelloWithGroup(0, GroupId('y'));
  less_memory.set_memory_bytes(10);
  ASSERT_TRUE(relay_->UpdateWorker(less_memory, &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 2);
  EXPECT_EQ(relay_->MakeHello().gpus(0).memory_bytes(), 10);
  // Only the GPU's own stream may update it; the worker stays attached.
  EXPECT_EQ(relay_->UpdateWorker(HelloWithGroup(0, GroupId('z')), &worker1_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(relay_->MakeHello().gpus(0).transfer_group_id(), GroupId('y'));
  EXPECT_TRUE(workers_->AllAttached());
}

TEST_F(ApplyRelayTest, AMalformedTransferGroupIdIsRefused) {
  absl::Status refused = relay_->AttachWorker(HelloWithGroup(0, "12345"), &worker0_);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("transfer_group_id has 5 bytes"), std::string::npos) << refused;
  AttachBoth();
  (void)relay_->MakeHello();
  relay_->OnPlannerConnected();
  // As an update: refused, nothing changes, nothing is re-announced.
  absl::Status update = relay_->UpdateWorker(HelloWithGroup(0, "12345"), &worker0_);
  EXPECT_EQ(update.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(planner_.reconnects, 0);
  EXPECT_EQ(relay_->MakeHello().gpus(0).transfer_group_id(), "");
  // The agent keeps serving: a prepare still goes to both workers.
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  EXPECT_EQ(worker0_.received.size(), 1u);
  EXPECT_EQ(worker1_.received.size(), 1u);
}

// ---------------------------------------------------------------- model shape

TEST_F(ApplyRelayTest, WithoutFlagsWorkersWaitForThePlannersModel) {
  Make(&store_, /*flags=*/{});
  EXPECT_FALSE(relay_->model().has_value());
  absl::Status early = relay_->AttachWorker(SizedHello(0), &worker0_);
  EXPECT_EQ(early.code(), absl::StatusCode::kUnavailable) << early;
  EXPECT_NE(early.message().find("does not know its model shape yet"), std::string::npos) << early;
  EXPECT_FALSE(relay_->MakeHello().has_model()) << "nothing configured: the planner says it";

  relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  ASSERT_TRUE(relay_->model().has_value());
  EXPECT_EQ(relay_->model()->bytes_per_expert(), 1000);
  EXPECT_TRUE(relay_->AttachWorker(SizedHello(0), &worker0_).ok());
  // Every field the planner states is checked, bytes_per_expert too.
  EXPECT_EQ(relay_->AttachWorker(Hello(1), &worker1_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(relay_->AttachWorker(SizedHello(1), &worker1_).ok());
}

TEST_F(ApplyRelayTest, AWorkerDeclaringAWrongShapeFirstDoesNotLockOutTheRealOnes) {
  FakeWorker impostor;
  craft::v1::WorkerHello wrong = SizedHello(0);
  wrong.mutable_model()->set_num_layers(13);
  for (const ModelCheck flags : {ModelCheck{}, ModelCheck{kLayers, kExperts, 2}}) {
    SCOPED_TRACE(flags.num_layers == 0 ? "shape from the planner" : "shape from the flags");
    worker0_.received.clear();
    Make(&store_, flags);
    relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
    // First to attach, and refused: the node's shape is not a worker's to set.
    EXPECT_EQ(relay_->AttachWorker(wrong, &impostor).code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(relay_->AttachWorker(SizedHello(0), &worker0_).ok());
    ASSERT_TRUE(relay_->AttachWorker(SizedHello(1), &worker1_).ok());
    EXPECT_TRUE(workers_->AllAttached());
    relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
    ASSERT_EQ(worker0_.received.size(), 1u);
    EXPECT_TRUE(worker0_.received[0].has_prepare());
  }
}

TEST_F(ApplyRelayTest, ThePlannersModelIsPersistedForARestartWithoutPlanner) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/apply_relay_model";
  std::remove(path.c_str());
  {
    FileStateStore store(path);
    Make(&store, /*flags=*/{});
    relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
    relay_.reset();
  }
  FileStateStore store(path);
  absl::StatusOr<AgentState> saved = store.Load();
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(saved->model.has_value());
  EXPECT_EQ(saved->model->num_layers(), kLayers);
  // Restarted while the planner is away: the workers attach all the same.
  Make(&store, /*flags=*/{});
  ASSERT_TRUE(relay_->model().has_value());
  EXPECT_TRUE(relay_->AttachWorker(SizedHello(0), &worker0_).ok());
  craft::v1::WorkerHello wrong = SizedHello(1);
  wrong.mutable_model()->set_num_layers(13);
  EXPECT_EQ(relay_->AttachWorker(wrong, &worker1_).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ApplyRelayTest, APlannerModelContradictingTheFlagsIsNotAdoptedAndItsLayoutsAreRefused) {
  ASSERT_TRUE(relay_->AttachWorker(SizedHello(0), &worker0_).ok());
  ASSERT_TRUE(relay_->AttachWorker(SizedHello(1), &worker1_).ok());
  relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel(/*num_layers=*/3)));
  ASSERT_TRUE(relay_->model().has_value());
  EXPECT_EQ(relay_->model()->num_layers(), kLayers) << "the flags win";
  EXPECT_TRUE(workers_->AllAttached());
  EXPECT_FALSE(store_.Load()->model.has_value()) << "nothing persisted";
  // The hello tells the planner what the flags say.
  EXPECT_EQ(relay_->MakeHello().model().num_layers(), kLayers);
  EXPECT_EQ(relay_->MakeHello().model().bytes_per_expert(), 0);

  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ExpectNack("n1", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_NE(LastSent().nack().error().message().find("contradicting"), std::string::npos)
      << LastSent().ShortDebugString();
  // A planner that agrees (on its next stream) is served again.
  relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  relay_->OnPlannerMessage(PrepareMessage(1, "n2", "1.2"));
  EXPECT_EQ(worker0_.received.size(), 1u);
}

TEST_F(ApplyRelayTest, AModelChangeEndsTheStreamsOfWorkersItNoLongerFits) {
  // The flags leave bytes_per_expert open: workers attach before the planner
  // states it.
  ASSERT_TRUE(relay_->AttachWorker(Hello(0), &worker0_).ok());  // bytes_per_expert 0
  ASSERT_TRUE(relay_->AttachWorker(SizedHello(1), &worker1_).ok());
  relay_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  ASSERT_TRUE(worker0_.closed.has_value()) << "gpu 0 runs another model";
  EXPECT_EQ(worker0_.closed->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(worker0_.closed->message().find("as the planner states it"), std::string::npos)
      << *worker0_.closed;
  EXPECT_FALSE(worker1_.closed.has_value());
  EXPECT_EQ(workers_->AttachedGpus(), std::vector<int>{1});
  // Its stream ending afterwards changes nothing; a fitting worker attaches.
  relay_->DetachWorker(0, &worker0_);
  EXPECT_EQ(relay_->AttachWorker(Hello(0), &worker0_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(relay_->AttachWorker(SizedHello(0), &worker0_).ok());
}

// ---------------------------------------------------------------- second claims

TEST_F(ApplyRelayTest, ASecondClaimToAGpuIsRefusedWhileTheFirstStreamLasts) {
  AttachBoth();
  FakeWorker second;
  absl::Status refused = relay_->AttachWorker(Hello(0, "9.9"), &second);
  EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists) << refused;
  // The first worker is untouched: still attached and served.
  EXPECT_FALSE(worker0_.closed.has_value());
  relay_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  EXPECT_EQ(worker0_.received.size(), 1u);
  EXPECT_TRUE(second.received.empty());
  // Once its stream ended (a crashed worker's ends with it), a new one attaches.
  relay_->DetachWorker(0, &worker0_);
  EXPECT_TRUE(relay_->AttachWorker(Hello(0), &second).ok());
}

}  // namespace
}  // namespace craft::agent
