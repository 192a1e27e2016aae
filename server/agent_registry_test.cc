#include "server/agent_registry.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/internal/test_support.h"
#include "wire/limits.h"

namespace craft::server {
namespace {

using testing::FakeConnection;
using ::testing::HasSubstr;
using testing::Hello;
using testing::SmallConfig;

// The cluster of SmallConfig(): GPUs 0, 1 on one node and 2, 3 on the other.
class AgentRegistryTest : public ::testing::Test {
 protected:
  AgentRegistryTest() : registry_(SmallConfig().model, SmallConfig().cluster, &clock_) {}

  // What ApplyCoordinator::Connect asks of the registry, in its order.
  absl::Status Connect(const craft::v1::AgentHello& hello,
                       std::shared_ptr<AgentConnection> connection) {
    if (absl::Status checked = registry_.CheckHello(hello); !checked.ok()) return checked;
    absl::StatusOr<std::optional<std::string>> room = registry_.MakeRoomFor(hello.node());
    if (!room.ok()) return room.status();
    registry_.Register(hello, std::move(connection));
    return absl::OkStatus();
  }

  FakeClock clock_;
  AgentRegistry registry_;
  std::shared_ptr<FakeConnection> a_ = std::make_shared<FakeConnection>();
  std::shared_ptr<FakeConnection> b_ = std::make_shared<FakeConnection>();
};

TEST_F(AgentRegistryTest, HelloMustFitTheModelAndCluster) {
  craft::v1::AgentHello wrong_model = Hello("a", {0, 1});
  wrong_model.mutable_model()->set_top_k(3);
  absl::Status status = registry_.CheckHello(wrong_model);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("model shape mismatch"));
  // A field of 0 is one the agent leaves to the planner.
  craft::v1::AgentHello partial = Hello("a", {0, 1});
  partial.mutable_model()->set_top_k(0);
  EXPECT_TRUE(registry_.CheckHello(partial).ok());

  EXPECT_EQ(registry_.CheckHello(Hello("", {0})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.CheckHello(Hello("a", {})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(registry_.CheckHello(Hello("a", {4})).message(), HasSubstr("outside [0, 4)"));
  EXPECT_THAT(registry_.CheckHello(Hello("a", {1, 1})).message(), HasSubstr("listed twice"));
  EXPECT_THAT(registry_.CheckHello(Hello("a", {1, 2})).message(), HasSubstr("different nodes"));
  // Identifiers are bounded: a 1 MiB name once made ListAgents exceed 4 MB.
  EXPECT_THAT(registry_.CheckHello(Hello(std::string(1 << 20, 'n'), {0})).message(),
              HasSubstr("a DNS name"));
  EXPECT_THAT(registry_.CheckHello(Hello("node a", {0})).message(), HasSubstr("a DNS name"));
  craft::v1::AgentHello long_endpoint = Hello("a", {0, 1});
  long_endpoint.mutable_gpus(0)->set_transfer_endpoint(std::string(300, 'x'));
  EXPECT_THAT(registry_.CheckHello(long_endpoint).message(), HasSubstr("transfer_endpoint over"));
  craft::v1::AgentHello long_version = Hello("a", {0, 1});
  long_version.set_prepared_version(std::string(200, '1'));
  EXPECT_EQ(registry_.CheckHello(long_version).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry_.Snapshots().empty());
}

TEST_F(AgentRegistryTest, GpusClaimedByAnotherConnectedNodeAreRefused) {
  ASSERT_TRUE(Connect(Hello("a", {0, 1}), a_).ok());
  absl::Status status = registry_.CheckHello(Hello("imposter", {1}));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  // The node itself may claim them again (a new stream), and once "a" is
  // gone they are free.
  EXPECT_TRUE(registry_.CheckHello(Hello("a", {0, 1})).ok());
  EXPECT_TRUE(registry_.Disconnect("a", a_.get()));
  EXPECT_TRUE(Connect(Hello("replacement", {0, 1}), b_).ok());
}

TEST_F(AgentRegistryTest, OnlyTheCurrentStreamOfANodeCounts) {
  ASSERT_TRUE(Connect(Hello("a", {0, 1}), a_).ok());
  auto a_again = std::make_shared<FakeConnection>();
  clock_.Advance(absl::Seconds(3));
  registry_.Register(Hello("a", {0, 1}), a_again);  // the old stream is replaced
  EXPECT_EQ(registry_.Current("a", a_.get()), nullptr);
  EXPECT_FALSE(registry_.Disconnect("a", a_.get())) << "an old stream's end changes nothing";
  EXPECT_EQ(registry_.Seen("a", a_.get()), nullptr);
  clock_.Advance(absl::Seconds(2));
  ASSERT_NE(registry_.Seen("a", a_again.get()), nullptr);
  EXPECT_EQ(registry_.Snapshots().at(0).last_seen, clock_.Now());
  EXPECT_TRUE(registry_.Snapshots().at(0).connected);
  EXPECT_TRUE(registry_.Disconnect("a", a_again.get()));
  EXPECT_FALSE(registry_.Snapshots().at(0).connected);
  EXPECT_EQ(registry_.GpusWithoutAgent(), (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(AgentRegistryTest, LoadsReportTheStagingHeadroomOfTheNodesOwnGpus) {
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.mutable_gpus(0)->set_staging_headroom_bytes(500);
  ASSERT_TRUE(Connect(hello, a_).ok());
  ASSERT_TRUE(Connect(Hello("b", {2, 3}), b_).ok());
  EXPECT_EQ(registry_.MinStagingHeadroom(), 500);
  EXPECT_TRUE(registry_.GpusWithoutAgent().empty());

  craft::v1::NodeLoad load;
  for (auto [gpu, bytes] : {std::pair{1, 300}, {2, 100}, {0, -7}}) {
    craft::v1::StagingHeadroom* headroom = load.add_headroom();
    headroom->set_gpu(gpu);
    headroom->set_bytes(bytes);
  }
  clock_.Advance(absl::Seconds(1));
  registry_.OnLoad("a", a_.get(), load);  // GPU 2 is b's; a negative value is no limit
  EXPECT_EQ(registry_.MinStagingHeadroom(), 300);
  EXPECT_EQ(registry_.Snapshots().at(0).last_seen, clock_.Now());
  registry_.OnLoad("a", b_.get(), load);  // not a's stream: ignored
  EXPECT_EQ(registry_.MinStagingHeadroom(), 300);
  // Only connected GPUs limit an apply.
  registry_.Disconnect("a", a_.get());
  EXPECT_EQ(registry_.MinStagingHeadroom(), std::nullopt);
}

TEST_F(AgentRegistryTest, ServingVersionsPerNodeAndGpu) {
  craft::v1::AgentHello hello = Hello("a", {1, 0}, "1.4");
  hello.mutable_gpus(0)->set_serving_version("0.0");  // GPU 1's worker restarted
  ASSERT_TRUE(Connect(hello, a_).ok());
  AgentRegistry::Node* node = registry_.Find("a");
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->gpus, (std::vector<int>{0, 1}));
  EXPECT_FALSE(node->InSync("1.4"));
  EXPECT_EQ(registry_.Snapshots().at(0).gpu_versions, (std::vector<std::string>{"1.4", "0.0"}));

  node->SetServing("1.4");
  EXPECT_TRUE(node->InSync("1.4"));
  craft::v1::Nack nack;  // of a commit: GPU 0 did not flip
  nack.mutable_error()->set_code(craft::v1::WORKER_MISSING);
  nack.mutable_error()->add_gpus()->set_gpu(0);
  node->MarkLagging(nack);
  EXPECT_FALSE(node->InSync("1.4"));
  EXPECT_EQ(registry_.Snapshots().at(0).gpu_versions, (std::vector<std::string>{"", "1.4"}));
}

// A transfer group id of the right size, distinct per `fill`.
std::string GroupId(char fill) { return std::string(kTransferGroupIdBytes, fill); }

// Node "a"'s hello (GPUs 0, 1) with `id` as GPU `id_rank`'s transfer group id.
craft::v1::AgentHello HelloWithGroup(const std::string& id, int id_rank = 0) {
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.mutable_gpus(id_rank)->set_transfer_group_id(id);
  return hello;
}

TEST_F(AgentRegistryTest, RankZerosLatestTransferGroupIdWins) {
  // None known (CPU backends).
  ASSERT_TRUE(Connect(Hello("a", {0, 1}), a_).ok());
  ASSERT_TRUE(Connect(Hello("b", {2, 3}), b_).ok());
  EXPECT_EQ(registry_.transfer_group_id(), "");

  registry_.Register(HelloWithGroup(GroupId('x')), a_);
  EXPECT_EQ(registry_.transfer_group_id(), GroupId('x'));
  for (const AgentSnapshot& agent : registry_.Snapshots()) {
    EXPECT_EQ(agent.has_transfer_group, agent.node == "a") << agent.node;
  }
  // Rank 0's communicator was aborted: its agent re-announces the node with
  // a new id.
  registry_.Register(HelloWithGroup(GroupId('y')), a_);
  EXPECT_EQ(registry_.transfer_group_id(), GroupId('y'));
  // A hello without one for rank 0 (its worker not attached yet), or with one
  // for another rank, keeps the latest.
  registry_.Register(HelloWithGroup(GroupId('z'), /*id_rank=*/1), a_);
  registry_.Register(Hello("a", {0, 1}), a_);
  EXPECT_EQ(registry_.transfer_group_id(), GroupId('y'));
}

TEST_F(AgentRegistryTest, AMalformedTransferGroupIdIsRefused) {
  absl::Status status = registry_.CheckHello(HelloWithGroup("12345"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("transfer_group_id has 5 bytes"));
}

TEST_F(AgentRegistryTest, NodeNamesCannotGrowPastTheClusterAndRejectionsCountPerNode) {
  ASSERT_TRUE(Connect(Hello("a", {0, 1}), a_).ok());
  ASSERT_TRUE(Connect(Hello("b", {2, 3}), b_).ok());  // the cluster has 2 nodes: both are known
  EXPECT_EQ(registry_.MakeRoomFor("c").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*registry_.MakeRoomFor("a"), std::nullopt) << "a known name needs no room";
  registry_.CountRejectedWindows("a", 1);
  registry_.CountRejectedWindows("a", 1);
  // Names come and go on b's GPUs: each new one takes the place of the
  // disconnected one before it, so the list stays at 2.
  registry_.Disconnect("b", b_.get());
  std::string previous = "b";
  for (const std::string name : {"c", "d", "e"}) {
    clock_.Advance(absl::Seconds(1));
    absl::StatusOr<std::optional<std::string>> forgotten = registry_.MakeRoomFor(name);
    ASSERT_TRUE(forgotten.ok()) << forgotten.status();
    EXPECT_EQ(*forgotten, previous);
    auto connection = std::make_shared<FakeConnection>();
    registry_.Register(Hello(name, {2, 3}), connection);
    registry_.Disconnect(name, connection.get());
    previous = name;
  }
  const std::vector<AgentSnapshot> agents = registry_.Snapshots();
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[0].node, "a");
  EXPECT_EQ(agents[0].windows_rejected, 2);
  EXPECT_EQ(agents[1].node, "e");
  EXPECT_EQ(agents[1].windows_rejected, 0);
}

}  // namespace
}  // namespace craft::server
