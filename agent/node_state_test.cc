// The protocol state machine against fake channels and a FakeClock.
#include "agent/node_state.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"

namespace craft::agent {
namespace {

using craft::v1::AgentMessage;
using craft::v1::WorkerCommand;

class FakePlanner : public PlannerChannel {
 public:
  void Send(const AgentMessage& message) override { sent.push_back(message); }
  void Reconnect() override { ++reconnects; }
  std::vector<AgentMessage> sent;
  int reconnects = 0;
};

class FakeWorker : public WorkerChannel {
 public:
  void Send(const WorkerCommand& command) override { received.push_back(command); }
  void Close(const absl::Status& status) override { closed = status; }
  std::vector<WorkerCommand> received;
  std::optional<absl::Status> closed;  // set when the agent ended the stream
};

constexpr int kLayers = 2;
constexpr int kExperts = 4;

craft::v1::WorkerHello Hello(int gpu, const std::string& version = "") {
  craft::v1::WorkerHello hello;
  hello.set_gpu(gpu);
  hello.set_memory_bytes(1000 + gpu);
  hello.set_transfer_endpoint("127.0.0.1:" + std::to_string(9000 + gpu));
  hello.mutable_model()->set_num_layers(kLayers);
  hello.mutable_model()->set_num_experts(kExperts);
  hello.mutable_model()->set_top_k(2);
  hello.set_committed_version(version);
  return hello;
}

craft::v1::PlannerMessage PrepareMessage(int64_t epoch, const std::string& nonce,
                                         const std::string& version, int64_t timeout_ms = 0,
                                         int num_gpus = 2, int num_experts = kExperts) {
  absl::StatusOr<planner::Layout> layout =
      planner::ContiguousLayout(kLayers, num_experts, {num_gpus, 1});
  EXPECT_TRUE(layout.ok()) << layout.status();
  craft::v1::PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  *message.mutable_prepare()->mutable_layout() = LayoutToProto(*layout, version);
  message.mutable_prepare()->set_timeout_ms(timeout_ms);
  return message;
}

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

craft::v1::WorkerStatus Status(const std::string& version, craft::v1::WorkerState state,
                               const std::string& error = "") {
  craft::v1::WorkerStatus status;
  status.set_version(version);
  status.set_state(state);
  status.set_error(error);
  return status;
}

craft::v1::GpuWindow Window(int gpu, int64_t id, int layers = kLayers) {
  craft::v1::GpuWindow window;
  window.set_gpu(gpu);
  window.set_window_id(id);
  window.set_layout_version("0.0");
  for (int l = 0; l < layers; ++l) window.add_layers()->add_counts(10 + l);
  return window;
}

class NodeStateTest : public ::testing::Test {
 protected:
  void SetUp() override { node_ = Make(&store_); }

  // `flags`: the agent's --num_layers/--num_experts/--top_k.
  std::unique_ptr<NodeState> Make(StateStore* store, ModelCheck flags = {kLayers, kExperts, 2}) {
    NodeState::Options options;
    options.node = "node-a";
    options.gpus = {1, 0};  // unsorted on purpose
    options.model_check = flags;
    options.window_flush_delay = absl::Milliseconds(100);
    options.max_buffered_loads = 2;
    absl::StatusOr<std::unique_ptr<NodeState>> node =
        NodeState::Create(options, &clock_, store, &planner_);
    EXPECT_TRUE(node.ok()) << node.status();
    return *std::move(node);
  }

  void AttachBoth() {
    ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
    ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
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
    node_->OnPlannerMessage(PrepareMessage(epoch, "p" + version, version));
    node_->OnWorkerStatus(0, Status(version, craft::v1::READY));
    node_->OnWorkerStatus(1, Status(version, craft::v1::READY));
    ExpectAck("p" + version, version, craft::v1::PREPARED);
    node_->OnPlannerMessage(CommitMessage(epoch, "c" + version, version));
    node_->OnWorkerStatus(0, Status(version, craft::v1::FLIPPED));
    node_->OnWorkerStatus(1, Status(version, craft::v1::FLIPPED));
    ExpectAck("c" + version, version, craft::v1::COMMITTED);
  }

  FakeClock clock_;
  MemoryStateStore store_;
  FakePlanner planner_;
  FakeWorker worker0_, worker1_;
  std::unique_ptr<NodeState> node_;
};

TEST_F(NodeStateTest, HappyPrepareAndCommit) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ASSERT_EQ(worker0_.received.size(), 1u);
  ASSERT_EQ(worker1_.received.size(), 1u);
  EXPECT_EQ(worker0_.received[0].prepare().layout().version(), "1.1");

  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  EXPECT_TRUE(planner_.sent.empty()) << "no ack before every worker is ready";
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("n1", "1.1", craft::v1::PREPARED);

  node_->OnPlannerMessage(CommitMessage(1, "n2", "1.1"));
  ASSERT_EQ(worker0_.received.size(), 2u);
  EXPECT_EQ(worker0_.received[1].commit().version(), "1.1");
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(planner_.sent.size(), 1u);
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("n2", "1.1", craft::v1::COMMITTED);

  EXPECT_EQ(node_->committed_version(), "1.1");
  EXPECT_FALSE(node_->apply_pending());
  const AgentState saved = *store_.Load();
  EXPECT_EQ(saved.highest_epoch, 1);
  EXPECT_EQ(saved.committed_version, "1.1");
  ASSERT_TRUE(saved.committed_layout.has_value());
  EXPECT_EQ(saved.committed_layout->version(), "1.1");

  // A repeated commit of the committed version is acknowledged again.
  node_->OnPlannerMessage(CommitMessage(1, "n3", "1.1"));
  ExpectAck("n3", "1.1", craft::v1::COMMITTED);
}

TEST_F(NodeStateTest, WorkerFailureNacksAndDropsStaging) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FAILED, "checksum mismatch"));
  ExpectNack("n1", craft::v1::WORKER_FAILED, "0.0", {1});
  EXPECT_EQ(LastSent().nack().error().gpus(0).message(), "checksum mismatch");
  EXPECT_EQ(LastSent().nack().version(), "1.1");
  ASSERT_EQ(worker0_.received.size(), 2u);
  EXPECT_EQ(worker0_.received[1].abort().version(), "1.1");

  // The planner's Abort that follows is acknowledged at once.
  node_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
  // Late statuses of the dropped version are ignored.
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  EXPECT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(node_->committed_version(), "0.0");
}

TEST_F(NodeStateTest, MissingWorkerNacksWithoutForwarding) {
  ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ExpectNack("n1", craft::v1::WORKER_MISSING, "0.0", {1});
  EXPECT_TRUE(worker0_.received.empty());
  node_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
}

TEST_F(NodeStateTest, WorkerDetachingDuringPrepareNacks) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->DetachWorker(1, &worker1_);
  ExpectNack("n1", craft::v1::WORKER_MISSING, "0.0", {1});
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  EXPECT_EQ(worker1_.received.size(), 1u) << "a detached worker is not written to";
}

TEST_F(NodeStateTest, StaleEpochIsRefusedWithoutAction) {
  AttachBoth();
  Apply(5, "5.1");
  const size_t commands = worker0_.received.size();
  node_->OnPlannerMessage(PrepareMessage(4, "old", "4.9"));
  ExpectNack("old", craft::v1::STALE_EPOCH, "5.1");
  EXPECT_EQ(LastSent().nack().version(), "4.9");
  node_->OnPlannerMessage(CommitMessage(4, "old2", "4.9"));
  ExpectNack("old2", craft::v1::STALE_EPOCH, "5.1");
  EXPECT_EQ(worker0_.received.size(), commands);
  EXPECT_EQ(node_->highest_epoch(), 5);
  // A higher epoch is accepted and remembered.
  Apply(6, "6.1");
  EXPECT_EQ(node_->highest_epoch(), 6);
  EXPECT_EQ(store_.Load()->highest_epoch, 6);
}

TEST_F(NodeStateTest, CommitOrAbortOfUnknownVersion) {
  AttachBoth();
  node_->OnPlannerMessage(CommitMessage(1, "n1", "1.7"));
  ExpectNack("n1", craft::v1::UNKNOWN_VERSION, "0.0");
  node_->OnPlannerMessage(AbortMessage(1, "n2", "1.7"));
  ExpectNack("n2", craft::v1::UNKNOWN_VERSION, "0.0");
  // Committing a version that is still being prepared is refused too.
  node_->OnPlannerMessage(PrepareMessage(1, "n3", "1.8"));
  node_->OnPlannerMessage(CommitMessage(1, "n4", "1.8"));
  ExpectNack("n4", craft::v1::UNKNOWN_VERSION, "0.0");
  EXPECT_TRUE(worker0_.received.back().has_prepare());
}

TEST_F(NodeStateTest, AbortWaitsForDropped) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  node_->OnPlannerMessage(AbortMessage(1, "n2", "1.1"));
  EXPECT_EQ(worker1_.received.back().abort().version(), "1.1");
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  ExpectAck("n1", "1.1", craft::v1::PREPARED);
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::DROPPED));
  ExpectAck("n2", "1.1", craft::v1::ABORTED);
  EXPECT_EQ(node_->committed_version(), "0.0");
  // Committing the aborted version is refused.
  node_->OnPlannerMessage(CommitMessage(1, "n3", "1.1"));
  ExpectNack("n3", craft::v1::UNKNOWN_VERSION, "0.0");
}

TEST_F(NodeStateTest, StuckWorkerTimesOut) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1", /*timeout_ms=*/1000));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  clock_.Advance(absl::Milliseconds(999));
  node_->Poll();
  EXPECT_TRUE(planner_.sent.empty());
  clock_.Advance(absl::Milliseconds(1));
  node_->Poll();
  ExpectNack("n1", craft::v1::TIMEOUT, "0.0", {1});
  EXPECT_EQ(worker1_.received.back().abort().version(), "1.1");
  EXPECT_FALSE(node_->apply_pending());
}

TEST_F(NodeStateTest, CommitTimesOutToo) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1", /*timeout_ms=*/500));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  clock_.Advance(absl::Seconds(10));  // no deadline while prepared: the planner decides
  node_->Poll();
  ExpectAck("n1", "1.1", craft::v1::PREPARED);
  node_->OnPlannerMessage(CommitMessage(1, "n2", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  clock_.Advance(absl::Milliseconds(500));
  node_->Poll();
  ExpectNack("n2", craft::v1::TIMEOUT, "1.1", {1});
  EXPECT_EQ(node_->committed_version(), "1.1") << "gpu 0 flipped: the node serves 1.1";
}

TEST_F(NodeStateTest, EpochAndVersionSurviveRestart) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/node_state_restart";
  std::remove(path.c_str());
  {
    FileStateStore store(path);
    node_ = Make(&store);
    AttachBoth();
    Apply(3, "3.1");
    node_.reset();
  }
  FileStateStore store(path);
  node_ = Make(&store);
  EXPECT_EQ(node_->highest_epoch(), 3);
  EXPECT_EQ(node_->committed_version(), "3.1");
  const craft::v1::AgentHello hello = node_->MakeHello();
  EXPECT_EQ(hello.highest_epoch(), 3);
  EXPECT_EQ(hello.committed_version(), "3.1");
  node_->OnPlannerMessage(CommitMessage(2, "n", "2.5"));
  ExpectNack("n", craft::v1::STALE_EPOCH, "3.1");
}

TEST_F(NodeStateTest, BadLayoutsAreNacked) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "e", "1.1", 0, 2, /*num_experts=*/8));
  ExpectNack("e", craft::v1::BAD_LAYOUT, "0.0");
  node_->OnPlannerMessage(PrepareMessage(1, "g", "1.2", 0, /*num_gpus=*/1, kExperts));
  ExpectNack("g", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage broken = PrepareMessage(1, "b", "1.3");
  broken.mutable_prepare()->mutable_layout()->mutable_layers(0)->set_phy2log(0, 99);
  node_->OnPlannerMessage(broken);
  ExpectNack("b", craft::v1::BAD_LAYOUT, "0.0");
  node_->OnPlannerMessage(PrepareMessage(1, "v", "bad version"));
  ExpectNack("v", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage transfer = PrepareMessage(1, "t", "1.4");
  craft::v1::Transfer* t = transfer.mutable_prepare()->add_transfers();
  t->set_layer(0);
  t->set_expert(3);
  t->set_dst_gpu(0);
  t->set_dst_slot(3);  // slot 3 is on gpu 1
  node_->OnPlannerMessage(transfer);
  ExpectNack("t", craft::v1::BAD_LAYOUT, "0.0");
  craft::v1::PlannerMessage empty;
  empty.set_epoch(1);
  empty.set_nonce("x");
  node_->OnPlannerMessage(empty);
  ExpectNack("x", craft::v1::ERROR_CODE_UNSPECIFIED, "0.0");
  EXPECT_TRUE(worker0_.received.empty());
  // A version is never reused, even one that was refused.
  node_->OnPlannerMessage(PrepareMessage(1, "again", "1.1"));
  ExpectNack("again", craft::v1::BAD_LAYOUT, "0.0");
}

TEST_F(NodeStateTest, ADeltaIsRebuiltFromTheCommittedLayoutAndForwardedInFull) {
  AttachBoth();
  const planner::Layout first = WithReplica(InitialLayout(), 1, 0);
  node_->OnPlannerMessage(DeltaPrepareMessage(1, "d1", InitialLayout(), "0.0", first, "1.1"));
  ASSERT_EQ(worker0_.received.size(), 1u);
  const craft::v1::Prepare& forwarded = worker0_.received[0].prepare();
  EXPECT_FALSE(forwarded.has_layout_delta()) << "workers get the full layout";
  EXPECT_EQ(forwarded.layout().version(), "1.1");
  EXPECT_EQ(*LayoutFromProto(forwarded.layout()), first);
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("d1", "1.1", craft::v1::PREPARED);
  node_->OnPlannerMessage(CommitMessage(1, "c1", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("c1", "1.1", craft::v1::COMMITTED);
  EXPECT_EQ(*LayoutFromProto(*store_.Load()->committed_layout), first);

  // The next delta's base is the committed 1.1.
  const planner::Layout second = WithReplica(first, 2, 1);
  node_->OnPlannerMessage(DeltaPrepareMessage(1, "d2", first, "1.1", second, "1.2"));
  ASSERT_EQ(worker1_.received.size(), 3u);
  EXPECT_EQ(*LayoutFromProto(worker1_.received[2].prepare().layout()), second);
}

TEST_F(NodeStateTest, ADeltaThisNodeCannotRebuildIsNackedAndChangesNothing) {
  AttachBoth();
  Apply(1, "1.1");  // the initial layout's content, committed as 1.1
  const size_t commands = worker0_.received.size();
  const planner::Layout held = InitialLayout();
  // The planner's 1.1 has a replica on GPU 0 this node's 1.1 lacks; the
  // delta names GPU 1's list only.
  const planner::Layout planners = WithReplica(held, 0, 0);
  const planner::Layout target = WithReplica(planners, 3, 1);
  // Another base version than the committed one.
  node_->OnPlannerMessage(DeltaPrepareMessage(1, "base", planners, "1.0", target, "1.2"));
  ExpectNack("base", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("full layout"), std::string::npos);
  // The committed version's name, another content: the fingerprint differs.
  node_->OnPlannerMessage(DeltaPrepareMessage(1, "print", planners, "1.1", target, "1.3"));
  ExpectNack("print", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("fingerprint"), std::string::npos);
  // Malformed: a GPU the cluster does not have.
  craft::v1::PlannerMessage malformed =
      DeltaPrepareMessage(1, "gpu", planners, "1.1", target, "1.4");
  malformed.mutable_prepare()->mutable_layout_delta()->mutable_changed(0)->set_gpu(7);
  node_->OnPlannerMessage(malformed);
  ExpectNack("gpu", craft::v1::BAD_LAYOUT, "1.1");
  EXPECT_NE(LastSent().nack().error().message().find("gpu 7"), std::string::npos);
  EXPECT_EQ(worker0_.received.size(), commands) << "no worker heard of any of them";
  EXPECT_EQ(node_->committed_version(), "1.1");
  EXPECT_FALSE(node_->apply_pending());
  // The full layout still works.
  node_->OnPlannerMessage(PrepareMessage(1, "full", "1.5"));
  EXPECT_EQ(worker0_.received.size(), commands + 1);
}

TEST_F(NodeStateTest, ADeltaFromTheInitialLayoutMustBeForThisNodesModel) {
  AttachBoth();
  const planner::Layout target = WithReplica(InitialLayout(), 1, 0);
  // The agent would build the initial layout of the delta's shape itself.
  craft::v1::PlannerMessage huge =
      DeltaPrepareMessage(1, "huge", InitialLayout(), "0.0", target, "1.1");
  huge.mutable_prepare()->mutable_layout_delta()->set_num_gpus(1 << 30);
  node_->OnPlannerMessage(huge);
  ExpectNack("huge", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_NE(LastSent().nack().error().message().find("not this node's model"), std::string::npos);
  craft::v1::PlannerMessage layers =
      DeltaPrepareMessage(1, "layers", InitialLayout(), "0.0", target, "1.2");
  layers.mutable_prepare()->mutable_layout_delta()->set_num_layers(kLayers + 1);
  node_->OnPlannerMessage(layers);
  ExpectNack("layers", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_TRUE(worker0_.received.empty());
}

TEST_F(NodeStateTest, NewPrepareSupersedesAndOneDuringCommitWaits) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "a", "1.1"));
  node_->OnPlannerMessage(PrepareMessage(1, "b", "1.2"));
  ASSERT_EQ(worker0_.received.size(), 3u);
  EXPECT_EQ(worker0_.received[1].abort().version(), "1.1");
  EXPECT_EQ(worker0_.received[2].prepare().layout().version(), "1.2");
  node_->OnWorkerStatus(0, Status("1.2", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.2", craft::v1::READY));
  ExpectAck("b", "1.2", craft::v1::PREPARED);
  node_->OnPlannerMessage(CommitMessage(1, "c", "1.2"));
  node_->OnPlannerMessage(PrepareMessage(1, "d", "1.3"));
  EXPECT_TRUE(worker0_.received.back().has_commit()) << "the prepare waits for the commit";
  node_->OnWorkerStatus(0, Status("1.2", craft::v1::FLIPPED));
  node_->OnWorkerStatus(1, Status("1.2", craft::v1::FLIPPED));
  ExpectAck("c", "1.2", craft::v1::COMMITTED);
  EXPECT_EQ(worker0_.received.back().prepare().layout().version(), "1.3");
}

TEST_F(NodeStateTest, LosingThePlannerKeepsAPreparedVersionInDoubt) {
  AttachBoth();
  node_->OnPlannerConnected();
  node_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  ExpectAck("p", "1.1", craft::v1::PREPARED);
  // The planner may have passed the commit point before its stream ended:
  // nothing is dropped, and the next hello asks it what became of 1.1.
  node_->OnPlannerDisconnected();
  EXPECT_EQ(worker0_.received.size(), 1u) << "no Abort forwarded";
  EXPECT_TRUE(node_->apply_pending());
  EXPECT_EQ(node_->MakeHello().prepared_version(), "1.1");
  EXPECT_EQ(node_->MakeHello().committed_version(), "0.0");

  // A restarted planner (epoch 2) committed it: commit from staging.
  node_->OnPlannerConnected();
  node_->OnPlannerMessage(ResyncMessage(2, "r", "1.1"));
  EXPECT_EQ(store_.Load()->committed_version, "1.1") << "recorded before any worker flips";
  EXPECT_EQ(worker0_.received.back().commit().version(), "1.1");
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::FLIPPED));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  ExpectAck("r", "1.1", craft::v1::COMMITTED);
  EXPECT_EQ(node_->MakeHello().prepared_version(), "");
}

TEST_F(NodeStateTest, AnInDoubtVersionThePlannerAbortedIsDropped) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  node_->OnPlannerDisconnected();
  node_->OnPlannerMessage(AbortMessage(2, "a", "1.1"));
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::DROPPED));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::DROPPED));
  ExpectAck("a", "1.1", craft::v1::ABORTED);
  EXPECT_FALSE(node_->apply_pending());
}

TEST_F(NodeStateTest, AResyncBringsEveryWorkerToTheCommittedLayout) {
  AttachBoth();
  node_->OnPlannerConnected();
  // This node never saw 3.4 (it restarted after losing the prepare, say).
  node_->OnPlannerMessage(ResyncMessage(3, "r", "3.4"));
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
  node_->OnWorkerStatus(0, Status("3.4", craft::v1::READY));
  EXPECT_EQ(worker0_.received.back().commit().version(), "3.4");
  node_->OnWorkerStatus(0, Status("3.4", craft::v1::FLIPPED));
  EXPECT_TRUE(planner_.sent.empty()) << "answered only once every worker is on it";
  node_->OnWorkerStatus(1, Status("3.4", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("3.4", craft::v1::FLIPPED));
  ExpectAck("r", "3.4", craft::v1::COMMITTED);
  EXPECT_EQ(node_->stats().worker_resyncs_done, 2);
  // Asked again, in sync: answered at once, nothing sent to workers.
  node_->OnPlannerMessage(ResyncMessage(3, "r2", "3.4"));
  ExpectAck("r2", "3.4", craft::v1::COMMITTED);
  EXPECT_EQ(worker0_.received.size(), 2u);
}

TEST_F(NodeStateTest, AWorkerThatComesBackIsBroughtToTheCommittedLayout) {
  AttachBoth();
  node_->OnPlannerConnected();
  Apply(1, "1.1");
  node_->DetachWorker(1, &worker1_);
  FakeWorker restarted;
  ASSERT_TRUE(node_->AttachWorker(Hello(1, "0.0"), &restarted).ok());
  ASSERT_EQ(restarted.received.size(), 1u);
  EXPECT_EQ(restarted.received[0].prepare().layout().version(), "1.1");
  EXPECT_TRUE(restarted.received[0].prepare().load_missing_from_checkpoint());
  // A planner Prepare meanwhile is refused: the node is not all on 1.1 yet.
  node_->OnPlannerMessage(PrepareMessage(1, "p2", "1.2"));
  ExpectNack("p2", craft::v1::WORKER_MISSING, "1.1", {1});
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(node_->MakeHello().gpus(1).serving_version(), "1.1");
  EXPECT_EQ(node_->stats().worker_resyncs_done, 1);
}

TEST_F(NodeStateTest, AnAgentRestartedMidCommitFinishesItFromItsState) {
  AttachBoth();
  node_->OnPlannerMessage(PrepareMessage(1, "p", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));
  node_->OnPlannerMessage(CommitMessage(1, "c", "1.1"));
  // Crash: worker 0 flipped, worker 1 still has 1.1 staged.
  FakeWorker again0, again1;
  node_ = Make(&store_);
  ASSERT_TRUE(node_->AttachWorker(Hello(0, "1.1"), &again0).ok());
  ASSERT_TRUE(node_->AttachWorker(Hello(1, "0.0"), &again1).ok());
  EXPECT_TRUE(again0.received.empty());
  ASSERT_EQ(again1.received.size(), 1u);
  EXPECT_EQ(again1.received[0].prepare().layout().version(), "1.1");
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));  // staged already
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::FLIPPED));
  EXPECT_EQ(node_->MakeHello().committed_version(), "1.1");
  EXPECT_EQ(node_->MakeHello().gpus(1).serving_version(), "1.1");
}

TEST_F(NodeStateTest, AFailedResyncIsRetriedAndTheAnswerSaysWhichGpuLags) {
  AttachBoth();
  node_->OnPlannerConnected();
  node_->OnPlannerMessage(ResyncMessage(2, "r", "2.1"));
  node_->OnWorkerStatus(0, Status("2.1", craft::v1::READY));
  node_->OnWorkerStatus(0, Status("2.1", craft::v1::FLIPPED));
  node_->OnWorkerStatus(1, Status("2.1", craft::v1::FAILED, "out of memory"));
  ExpectNack("r", craft::v1::WORKER_MISSING, "2.1", {1});
  EXPECT_EQ(worker1_.received.back().abort().version(), "2.1");
  const size_t sent = worker1_.received.size();
  clock_.Advance(absl::Milliseconds(500));
  node_->Poll();
  EXPECT_EQ(worker1_.received.size(), sent) << "not before the pause";
  clock_.Advance(absl::Milliseconds(600));
  node_->Poll();
  ASSERT_EQ(worker1_.received.size(), sent + 1);
  EXPECT_EQ(worker1_.received.back().prepare().layout().version(), "2.1");
  EXPECT_EQ(node_->stats().worker_resyncs_failed, 1);
}

TEST_F(NodeStateTest, AResyncWithABadLayoutIsRefused) {
  AttachBoth();
  craft::v1::PlannerMessage resync = ResyncMessage(2, "r", "2.1");
  resync.mutable_commit()->mutable_layout()->set_version("2.0");
  node_->OnPlannerMessage(resync);
  ExpectNack("r", craft::v1::BAD_LAYOUT, "0.0");
  // A commit of an unknown version without a layout cannot be resynced.
  node_->OnPlannerMessage(CommitMessage(2, "c", "2.2"));
  ExpectNack("c", craft::v1::UNKNOWN_VERSION, "0.0");
  EXPECT_EQ(store_.Load()->committed_version, "");
  EXPECT_TRUE(worker0_.received.empty());
}

TEST_F(NodeStateTest, LosingThePlannerDropsAnUncommittedApplyOnly) {
  AttachBoth();
  node_->OnPlannerConnected();
  node_->OnPlannerMessage(PrepareMessage(1, "a", "1.1"));
  node_->OnPlannerDisconnected();
  EXPECT_EQ(worker0_.received.back().abort().version(), "1.1");
  EXPECT_FALSE(node_->apply_pending());
  EXPECT_EQ(node_->committed_version(), "0.0");
}

TEST_F(NodeStateTest, WindowsOfOneIdAreBatched) {
  AttachBoth();
  node_->OnPlannerConnected();
  ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, 1)).ok());
  EXPECT_TRUE(planner_.sent.empty());
  ASSERT_TRUE(node_->OnWorkerWindow(1, Window(1, 1)).ok());
  ASSERT_TRUE(LastSent().has_load());
  EXPECT_EQ(LastSent().load().gpus_size(), 2);
  EXPECT_EQ(LastSent().load().gpus(0).layout_version(), "0.0");

  // A lone window goes out after the flush delay.
  ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, 2)).ok());
  clock_.Advance(absl::Milliseconds(99));
  node_->Poll();
  EXPECT_EQ(planner_.sent.size(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  node_->Poll();
  ASSERT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(LastSent().load().gpus_size(), 1);
  EXPECT_EQ(node_->stats().loads_sent, 2);
}

TEST_F(NodeStateTest, LoadsAreBufferedWhileDisconnectedAndOldestDropped) {
  ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
  for (int id = 1; id <= 3; ++id) ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, id)).ok());
  EXPECT_TRUE(planner_.sent.empty());
  EXPECT_EQ(node_->stats().loads_dropped, 1);
  node_->OnPlannerConnected();
  ASSERT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(planner_.sent[0].load().gpus(0).window_id(), 2);
  EXPECT_EQ(planner_.sent[1].load().gpus(0).window_id(), 3);
}

TEST_F(NodeStateTest, BadWindowsAreDroppedOrEndTheStream) {
  AttachBoth();
  node_->OnPlannerConnected();
  EXPECT_EQ(node_->OnWorkerWindow(0, Window(1, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(node_->OnWorkerWindow(0, Window(0, 1, /*layers=*/3)).ok());
  craft::v1::GpuWindow negative = Window(0, 2);
  negative.mutable_layers(0)->set_counts(0, -5);
  EXPECT_TRUE(node_->OnWorkerWindow(0, negative).ok());
  EXPECT_TRUE(node_->OnWorkerWindow(0, Window(0, 3)).ok());
  EXPECT_TRUE(node_->OnWorkerWindow(0, Window(0, 3)).ok());  // repeated id
  EXPECT_EQ(node_->stats().windows_rejected, 3);
}

TEST_F(NodeStateTest, AttachValidatesTheWorker) {
  EXPECT_EQ(node_->AttachWorker(Hello(7), &worker0_).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
  EXPECT_EQ(node_->AttachWorker(Hello(0), &worker1_).code(), absl::StatusCode::kAlreadyExists);
  craft::v1::WorkerHello wrong = Hello(1);
  wrong.mutable_model()->set_num_layers(3);
  EXPECT_EQ(node_->AttachWorker(wrong, &worker1_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(node_->AllWorkersAttached());
  ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_TRUE(node_->AllWorkersAttached());
  // Detaching with another stream's channel does nothing.
  node_->DetachWorker(1, &worker0_);
  EXPECT_TRUE(node_->AllWorkersAttached());
}

TEST_F(NodeStateTest, HelloDescribesTheNode) {
  ASSERT_TRUE(node_->AttachWorker(Hello(1, "2.4"), &worker1_).ok());
  craft::v1::AgentHello hello = node_->MakeHello();
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

TEST_F(NodeStateTest, AWorkerComingBackIsReannounced) {
  AttachBoth();
  (void)node_->MakeHello();
  node_->OnPlannerConnected();
  // The same worker re-attaching as before changes nothing.
  node_->DetachWorker(1, &worker1_);
  ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 0);
  // A restarted worker (new endpoint) makes the planner's view stale.
  node_->DetachWorker(1, &worker1_);
  craft::v1::WorkerHello restarted = Hello(1);
  restarted.set_transfer_endpoint("127.0.0.1:9999");
  ASSERT_TRUE(node_->AttachWorker(restarted, &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  EXPECT_EQ(node_->MakeHello().gpus(1).transfer_endpoint(), "127.0.0.1:9999");
}

TEST_F(NodeStateTest, AWorkerAttachingAfterTheNodeWasAnnouncedIsAnnounced) {
  // The agent stopped waiting for workers and said hello with GPU 0 only.
  ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
  ASSERT_EQ(node_->MakeHello().gpus(1).transfer_endpoint(), "");
  node_->OnPlannerConnected();
  // GPU 1's late worker brings an endpoint the planner does not have.
  ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  EXPECT_EQ(node_->MakeHello().gpus(1).transfer_endpoint(), "127.0.0.1:9001");
}

// A transfer group id of the right size (an ncclUniqueId), distinct per `fill`.
std::string GroupId(char fill) { return std::string(kTransferGroupIdBytes, fill); }

craft::v1::WorkerHello HelloWithGroup(int gpu, const std::string& id) {
  craft::v1::WorkerHello hello = Hello(gpu);
  hello.set_transfer_group_id(id);
  return hello;
}

TEST_F(NodeStateTest, TheTransferGroupIdOfAWorkerReachesItsGpuInfo) {
  ASSERT_TRUE(node_->AttachWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  craft::v1::AgentHello hello = node_->MakeHello();
  ASSERT_EQ(hello.gpus_size(), 2);
  EXPECT_EQ(hello.gpus(0).transfer_group_id(), GroupId('x'));
  EXPECT_EQ(hello.gpus(1).transfer_group_id(), "");
}

TEST_F(NodeStateTest, PreparesRelayTheTransferGroupIdToEveryWorker) {
  AttachBoth();
  craft::v1::PlannerMessage prepare = PrepareMessage(1, "n1", "1.1");
  prepare.mutable_prepare()->set_transfer_group_id(GroupId('x'));
  node_->OnPlannerMessage(prepare);
  for (FakeWorker* worker : {&worker0_, &worker1_}) {
    ASSERT_EQ(worker->received.size(), 1u);
    EXPECT_EQ(worker->received[0].prepare().transfer_group_id(), GroupId('x'));
  }
}

TEST_F(NodeStateTest, ASecondHelloUpdatesTheGpuAndReannouncesWhatChanged) {
  ASSERT_TRUE(node_->AttachWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  (void)node_->MakeHello();
  node_->OnPlannerConnected();
  // The same hello again changes nothing the planner knows.
  ASSERT_TRUE(node_->UpdateWorker(HelloWithGroup(0, GroupId('x')), &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 0);
  // Rank 0's communicator was aborted: a new id, re-announced with a fresh
  // hello on a new stream.
  ASSERT_TRUE(node_->UpdateWorker(HelloWithGroup(0, GroupId('y')), &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 1);
  craft::v1::AgentHello hello = node_->MakeHello();
  EXPECT_EQ(hello.gpus(0).transfer_group_id(), GroupId('y'));
  EXPECT_EQ(hello.gpus(0).transfer_endpoint(), "127.0.0.1:9000");
  // Memory is announced too.
  craft::v1::WorkerHello less_memory = HelloWithGroup(0, GroupId('y'));
  less_memory.set_memory_bytes(10);
  ASSERT_TRUE(node_->UpdateWorker(less_memory, &worker0_).ok());
  EXPECT_EQ(planner_.reconnects, 2);
  EXPECT_EQ(node_->MakeHello().gpus(0).memory_bytes(), 10);
  // Only the GPU's own stream may update it; the worker stays attached.
  EXPECT_EQ(node_->UpdateWorker(HelloWithGroup(0, GroupId('z')), &worker1_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(node_->MakeHello().gpus(0).transfer_group_id(), GroupId('y'));
  EXPECT_TRUE(node_->AllWorkersAttached());
}

TEST_F(NodeStateTest, AMalformedTransferGroupIdIsRefused) {
  absl::Status refused = node_->AttachWorker(HelloWithGroup(0, "12345"), &worker0_);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("transfer_group_id has 5 bytes"), std::string::npos) << refused;
  AttachBoth();
  (void)node_->MakeHello();
  node_->OnPlannerConnected();
  // As an update: refused, nothing changes, nothing is re-announced.
  absl::Status update = node_->UpdateWorker(HelloWithGroup(0, "12345"), &worker0_);
  EXPECT_EQ(update.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(planner_.reconnects, 0);
  EXPECT_EQ(node_->MakeHello().gpus(0).transfer_group_id(), "");
  // The agent keeps serving: a prepare still goes to both workers.
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  EXPECT_EQ(worker0_.received.size(), 1u);
  EXPECT_EQ(worker1_.received.size(), 1u);
}

// ---------------------------------------------------------------- model shape

TEST_F(NodeStateTest, WithoutFlagsWorkersWaitForThePlannersModel) {
  node_ = Make(&store_, /*flags=*/{});
  EXPECT_FALSE(node_->model().has_value());
  absl::Status early = node_->AttachWorker(SizedHello(0), &worker0_);
  EXPECT_EQ(early.code(), absl::StatusCode::kUnavailable) << early;
  EXPECT_NE(early.message().find("does not know its model shape yet"), std::string::npos) << early;
  EXPECT_FALSE(node_->MakeHello().has_model()) << "nothing configured: the planner says it";

  node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  ASSERT_TRUE(node_->model().has_value());
  EXPECT_EQ(node_->model()->bytes_per_expert(), 1000);
  EXPECT_TRUE(node_->AttachWorker(SizedHello(0), &worker0_).ok());
  // Every field the planner states is checked, bytes_per_expert too.
  EXPECT_EQ(node_->AttachWorker(Hello(1), &worker1_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(node_->AttachWorker(SizedHello(1), &worker1_).ok());
}

TEST_F(NodeStateTest, AWorkerDeclaringAWrongShapeFirstDoesNotLockOutTheRealOnes) {
  FakeWorker impostor;
  craft::v1::WorkerHello wrong = SizedHello(0);
  wrong.mutable_model()->set_num_layers(13);
  for (const ModelCheck flags : {ModelCheck{}, ModelCheck{kLayers, kExperts, 2}}) {
    SCOPED_TRACE(flags.num_layers == 0 ? "shape from the planner" : "shape from the flags");
    worker0_.received.clear();
    node_ = Make(&store_, flags);
    node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
    // First to attach, and refused: the node's shape is not a worker's to set.
    EXPECT_EQ(node_->AttachWorker(wrong, &impostor).code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(node_->AttachWorker(SizedHello(0), &worker0_).ok());
    ASSERT_TRUE(node_->AttachWorker(SizedHello(1), &worker1_).ok());
    EXPECT_TRUE(node_->AllWorkersAttached());
    node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
    ASSERT_EQ(worker0_.received.size(), 1u);
    EXPECT_TRUE(worker0_.received[0].has_prepare());
  }
}

TEST_F(NodeStateTest, ThePlannersModelIsPersistedForARestartWithoutPlanner) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/node_state_model";
  std::remove(path.c_str());
  {
    FileStateStore store(path);
    node_ = Make(&store, /*flags=*/{});
    node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
    node_.reset();
  }
  FileStateStore store(path);
  absl::StatusOr<AgentState> saved = store.Load();
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(saved->model.has_value());
  EXPECT_EQ(saved->model->num_layers(), kLayers);
  // Restarted while the planner is away: the workers attach all the same.
  node_ = Make(&store, /*flags=*/{});
  ASSERT_TRUE(node_->model().has_value());
  EXPECT_TRUE(node_->AttachWorker(SizedHello(0), &worker0_).ok());
  craft::v1::WorkerHello wrong = SizedHello(1);
  wrong.mutable_model()->set_num_layers(13);
  EXPECT_EQ(node_->AttachWorker(wrong, &worker1_).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(NodeStateTest, APlannerModelContradictingTheFlagsIsNotAdoptedAndItsLayoutsAreRefused) {
  ASSERT_TRUE(node_->AttachWorker(SizedHello(0), &worker0_).ok());
  ASSERT_TRUE(node_->AttachWorker(SizedHello(1), &worker1_).ok());
  node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel(/*num_layers=*/3)));
  ASSERT_TRUE(node_->model().has_value());
  EXPECT_EQ(node_->model()->num_layers(), kLayers) << "the flags win";
  EXPECT_TRUE(node_->AllWorkersAttached());
  EXPECT_FALSE(store_.Load()->model.has_value()) << "nothing persisted";
  // The hello tells the planner what the flags say.
  EXPECT_EQ(node_->MakeHello().model().num_layers(), kLayers);
  EXPECT_EQ(node_->MakeHello().model().bytes_per_expert(), 0);

  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  ExpectNack("n1", craft::v1::BAD_LAYOUT, "0.0");
  EXPECT_NE(LastSent().nack().error().message().find("contradicting"), std::string::npos)
      << LastSent().ShortDebugString();
  // A planner that agrees (on its next stream) is served again.
  node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  node_->OnPlannerMessage(PrepareMessage(1, "n2", "1.2"));
  EXPECT_EQ(worker0_.received.size(), 1u);
}

TEST_F(NodeStateTest, AModelChangeEndsTheStreamsOfWorkersItNoLongerFits) {
  // The flags leave bytes_per_expert open: workers attach before the planner
  // states it.
  ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());  // bytes_per_expert 0
  ASSERT_TRUE(node_->AttachWorker(SizedHello(1), &worker1_).ok());
  node_->OnPlannerMessage(WelcomeMessage(1, PlannerModel()));
  ASSERT_TRUE(worker0_.closed.has_value()) << "gpu 0 runs another model";
  EXPECT_EQ(worker0_.closed->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(worker0_.closed->message().find("as the planner states it"), std::string::npos)
      << *worker0_.closed;
  EXPECT_FALSE(worker1_.closed.has_value());
  EXPECT_EQ(node_->stats().attached_gpus, std::vector<int>{1});
  // Its stream ending afterwards changes nothing; a fitting worker attaches.
  node_->DetachWorker(0, &worker0_);
  EXPECT_EQ(node_->AttachWorker(Hello(0), &worker0_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(node_->AttachWorker(SizedHello(0), &worker0_).ok());
}

// ---------------------------------------------------------------- second claims

TEST_F(NodeStateTest, ASecondClaimToAGpuIsRefusedWhileTheFirstStreamLasts) {
  AttachBoth();
  FakeWorker second;
  absl::Status refused = node_->AttachWorker(Hello(0, "9.9"), &second);
  EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists) << refused;
  // The first worker is untouched: still attached and served.
  EXPECT_FALSE(worker0_.closed.has_value());
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  EXPECT_EQ(worker0_.received.size(), 1u);
  EXPECT_TRUE(second.received.empty());
  // Once its stream ended (a crashed worker's ends with it), a new one attaches.
  node_->DetachWorker(0, &worker0_);
  EXPECT_TRUE(node_->AttachWorker(Hello(0), &second).ok());
}

}  // namespace
}  // namespace craft::agent
