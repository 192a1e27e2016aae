// NodeState as the gRPC adapters see it: the registry, the apply relay and the
// load forwarder behind one interface. The parts' own rules are tested in
// apply_relay_test.cc and load_forwarder_test.cc; here, what the composition
// adds: options, stats from every part, and events that reach both.
#include "agent/node_state.h"

#include <memory>
#include <vector>

#include "agent/test_util.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

using testing::FakePlanner;
using testing::FakeWorker;
using testing::Hello;
using testing::kExperts;
using testing::kLayers;
using testing::PrepareMessage;
using testing::Status;
using testing::Window;

NodeState::Options Options() {
  NodeState::Options options;
  options.node = "node-a";
  options.gpus = {1, 0};  // unsorted on purpose
  options.model_check = {kLayers, kExperts, 2};
  options.window_flush_delay = absl::Milliseconds(100);
  options.max_buffered_loads = 2;
  return options;
}

class NodeStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NodeState>> node =
        NodeState::Create(Options(), &clock_, &store_, &planner_);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
  }

  void AttachBoth() {
    ASSERT_TRUE(node_->AttachWorker(Hello(0), &worker0_).ok());
    ASSERT_TRUE(node_->AttachWorker(Hello(1), &worker1_).ok());
  }

  FakeClock clock_;
  MemoryStateStore store_;
  FakePlanner planner_;
  FakeWorker worker0_, worker1_;
  std::unique_ptr<NodeState> node_;
};

TEST_F(NodeStateTest, BadOptionsOfEitherPartAreRefused) {
  auto refused = [&](NodeState::Options options) {
    return NodeState::Create(options, &clock_, &store_, &planner_).status().code();
  };
  NodeState::Options options = Options();
  options.node = "";
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.gpus = {};
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
  options.gpus = {0, 0};
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
  options.gpus = {-1};
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.window_flush_delay = absl::Milliseconds(-1);
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.default_apply_timeout = absl::ZeroDuration();
  EXPECT_EQ(refused(options), absl::StatusCode::kInvalidArgument);
}

TEST_F(NodeStateTest, TheNodesGpusAreItsOptionsInRankOrder) {
  EXPECT_FALSE(node_->AllWorkersAttached());
  AttachBoth();
  EXPECT_TRUE(node_->AllWorkersAttached());
  const craft::v1::AgentHello hello = node_->MakeHello();
  ASSERT_EQ(hello.gpus_size(), 2);
  EXPECT_EQ(hello.gpus(0).rank(), 0);
  EXPECT_EQ(hello.gpus(1).rank(), 1);
  EXPECT_EQ(node_->committed_version(), "0.0");
  EXPECT_EQ(node_->model()->num_layers(), kLayers);
}

TEST_F(NodeStateTest, StatsComeFromEveryPart) {
  AttachBoth();
  (void)node_->MakeHello();
  node_->OnPlannerConnected();
  ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, 1)).ok());
  ASSERT_TRUE(node_->OnWorkerWindow(1, Window(1, 1)).ok());
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1"));
  node_->OnWorkerStatus(0, Status("1.1", craft::v1::READY));
  node_->OnWorkerStatus(1, Status("1.1", craft::v1::READY));

  NodeState::Stats stats = node_->stats();
  EXPECT_EQ(stats.windows_received, 2);  // the forwarder's
  EXPECT_EQ(stats.loads_sent, 1);
  EXPECT_EQ(stats.acks_sent, 1);  // the relay's
  EXPECT_EQ(stats.acks_by_phase[craft::v1::PREPARED], 1);
  EXPECT_EQ(stats.planner_connects, 1);
  EXPECT_TRUE(stats.planner_connected);
  EXPECT_EQ(stats.attached_gpus, (std::vector<int>{0, 1}));
  EXPECT_TRUE(node_->apply_pending());

  node_->OnPlannerDisconnected();
  stats = node_->stats();
  EXPECT_FALSE(stats.planner_connected);
  EXPECT_EQ(stats.planner_disconnects, 1);
}

TEST_F(NodeStateTest, PollDrivesApplyDeadlinesAndLoadFlushes) {
  AttachBoth();
  node_->OnPlannerConnected();
  node_->OnPlannerMessage(PrepareMessage(1, "n1", "1.1", /*timeout_ms=*/100));
  ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, 1)).ok());  // gpu 1's never comes
  clock_.Advance(absl::Milliseconds(100));
  node_->Poll();
  ASSERT_EQ(planner_.sent.size(), 2u);
  EXPECT_EQ(planner_.sent[0].nack().error().code(), craft::v1::TIMEOUT);
  EXPECT_EQ(planner_.sent[1].load().gpus_size(), 1);
  EXPECT_FALSE(node_->apply_pending());
}

TEST_F(NodeStateTest, LoadsBufferedWhileAwayFollowTheNextHello) {
  AttachBoth();
  ASSERT_TRUE(node_->OnWorkerWindow(0, Window(0, 1)).ok());
  ASSERT_TRUE(node_->OnWorkerWindow(1, Window(1, 1)).ok());
  EXPECT_TRUE(planner_.sent.empty());
  (void)node_->MakeHello();
  node_->OnPlannerConnected();
  ASSERT_EQ(planner_.sent.size(), 1u);
  EXPECT_EQ(planner_.sent[0].load().gpus_size(), 2);
  EXPECT_EQ(planner_.reconnects, 0);
}

}  // namespace
}  // namespace craft::agent
