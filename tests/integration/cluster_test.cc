// End-to-end tests of a real local cluster: one planner, two agents and
// eight CPU workers as processes, skewed traffic, the two-phase apply, and
// faults (a worker dying mid-prepare, planner restarts, a stale planner,
// garbage on the sockets).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "craft/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tools/local_cluster/local_cluster.h"

namespace craft::testing {

using ::craft::local_cluster::ClusterOptions;
using ::craft::local_cluster::LocalCluster;
using ::craft::local_cluster::Role;
using ::craft::local_cluster::WaitFor;
namespace {

constexpr absl::Duration kApplyWait = absl::Seconds(40);

// Starts a cluster and waits until the planner sees every agent and some
// complete windows of the initial layout.
std::unique_ptr<LocalCluster> StartedCluster(ClusterOptions options = {}) {
  auto cluster = std::make_unique<LocalCluster>(options);
  absl::Status started = cluster->Start();
  EXPECT_TRUE(started.ok()) << started;
  EXPECT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  EXPECT_TRUE(cluster->WaitForMeasuredBalance(absl::Seconds(30)).ok());
  return cluster;
}

// Replans until a new version commits (the first replan may find too few
// windows) and returns it.
std::string ReplanAndCommit(LocalCluster& cluster, const std::string& old_version) {
  std::string version;
  const bool committed = WaitFor(
      [&] {
        auto replan = cluster.Replan(/*force=*/false);
        if (!replan.ok()) return false;
        auto next = cluster.WaitForNewVersion(old_version, absl::Seconds(8));
        if (!next.ok()) return false;
        version = *next;
        return true;
      },
      kApplyWait);
  EXPECT_TRUE(committed) << "no commit; planner log:\n" << cluster.planner().Log();
  return version;
}

TEST(ClusterTest, ReplanAppliesEverywhereAndBalanceRises) {
  auto cluster = StartedCluster();
  auto measured = cluster->WaitForMeasuredBalance(absl::Seconds(30));
  ASSERT_TRUE(measured.ok()) << measured.status();
  const double balance_before = *measured;
  EXPECT_EQ(cluster->GetLayout()->committed().version(), "0.0");

  const std::string version = ReplanAndCommit(*cluster, "0.0");
  ASSERT_FALSE(version.empty());
  // Every worker staged, verified and flipped: its slots' checksums match
  // their experts under the new version.
  EXPECT_TRUE(WaitFor([&] { return cluster->AllWorkersVerified(version); }, absl::Seconds(15)));

  // Windows recorded under the new layout: balance measured by the workers'
  // own counts rises.
  auto after = cluster->WaitForMeasuredBalance(absl::Seconds(30));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(cluster->GetLayout()->committed().version(), version);
  EXPECT_GT(*after, balance_before + 0.05) << "before " << balance_before << " after " << *after;
}

TEST(ClusterTest, WorkerDyingDuringPrepareAbortsAndTheNextReplanSucceeds) {
  auto cluster = std::make_unique<LocalCluster>(ClusterOptions{});
  ASSERT_TRUE(cluster->StartPlanner().ok());
  for (int node = 0; node < 2; ++node) ASSERT_TRUE(cluster->StartAgent(node).ok());
  for (int gpu = 0; gpu < 8; ++gpu) {
    ASSERT_TRUE(cluster
                    ->StartWorker(gpu, gpu == 5 ? std::vector<std::string>{"--exit_on_prepare"}
                                                : std::vector<std::string>{})
                    .ok());
  }
  ASSERT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  ASSERT_TRUE(cluster->WaitForMeasuredBalance(absl::Seconds(30)).ok());

  // The apply reaches worker 5, which dies: the planner aborts, 0.0 serves on.
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)cluster->Replan(/*force=*/true);
        return !cluster->worker(5).Running();
      },
      absl::Seconds(20)));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto status = cluster->GetLayout();
        return status.ok() && status->pending_version().empty();
      },
      absl::Seconds(20)));
  EXPECT_EQ(cluster->GetLayout()->committed().version(), "0.0");
  for (int gpu = 0; gpu < 8; ++gpu) {
    if (gpu == 5) continue;
    EXPECT_EQ(cluster->worker(gpu).Log().find("FLIPPED"), std::string::npos) << "gpu " << gpu;
  }

  // The worker comes back; the next replan commits everywhere.
  ASSERT_TRUE(cluster->StartWorker(5).ok());
  const std::string version = ReplanAndCommit(*cluster, "0.0");
  ASSERT_FALSE(version.empty());
  EXPECT_TRUE(WaitFor([&] { return cluster->AllWorkersVerified(version); }, absl::Seconds(15)));
}

// One planner, two placement groups (a prefill and a decode pool, one node
// each, ranks from 0 in each): a worker of the decode group dies mid-prepare,
// which aborts the decode group's apply only; the prefill group commits and
// its workers serve the new layout while the decode workers serve 0.0.
TEST(ClusterTest, PlacementGroupsApplyIndependentlyAndAFaultStaysInItsGroup) {
  ClusterOptions options;
  options.groups = {"prefill", "decode"};
  auto cluster = std::make_unique<LocalCluster>(options);
  ASSERT_TRUE(cluster->StartPlanner().ok());
  for (int node = 0; node < 2; ++node) ASSERT_TRUE(cluster->StartAgent(node).ok());
  constexpr int kDying = 5;  // the decode group's rank 1
  for (int gpu = 0; gpu < 8; ++gpu) {
    ASSERT_TRUE(cluster
                    ->StartWorker(gpu, gpu == kDying ? std::vector<std::string>{"--exit_on_prepare"}
                                                     : std::vector<std::string>{})
                    .ok());
  }
  ASSERT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  ASSERT_TRUE(cluster->WaitForWindows(2, absl::Seconds(30)));
  auto agents = cluster->ListAgents("decode");
  ASSERT_TRUE(agents.ok()) << agents.status();
  ASSERT_EQ(agents->agents_size(), 1);
  EXPECT_EQ(agents->agents(0).node(), "node1");
  EXPECT_EQ(cluster->GetLayout().status().code(), absl::StatusCode::kInvalidArgument)
      << "a request must name its group";

  // The decode apply reaches the dying worker: aborted, 0.0 serves on.
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)cluster->Replan(/*force=*/true, "decode");
        return !cluster->worker(kDying).Running();
      },
      absl::Seconds(20)));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto status = cluster->GetLayout("decode");
        return status.ok() && status->pending_version().empty();
      },
      absl::Seconds(20)));
  EXPECT_EQ(cluster->GetLayout("decode")->committed().version(), "0.0");

  // The prefill group applies regardless.
  std::string version;
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)cluster->Replan(/*force=*/true, "prefill");
        auto status = cluster->GetLayout("prefill");
        if (!status.ok() || status->committed().version() == "0.0") return false;
        version = status->committed().version();
        return true;
      },
      kApplyWait))
      << cluster->planner().Log();
  EXPECT_EQ(cluster->GetLayout("prefill")->group(), "prefill");
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int gpu = 0; gpu < 4; ++gpu) {
          if (cluster->WorkerServingVersion(gpu) != version) return false;
        }
        return true;
      },
      absl::Seconds(15)));
  for (int gpu = 4; gpu < 8; ++gpu) {
    if (gpu == kDying) continue;
    EXPECT_EQ(cluster->worker(gpu).Log().find("FLIPPED"), std::string::npos) << "gpu " << gpu;
  }
  EXPECT_EQ(cluster->GetLayout("decode")->committed().version(), "0.0");
}

TEST(ClusterTest, PlannerRestartKeepsTheVersionAndMovesNothing) {
  auto cluster = StartedCluster();
  const std::string version = ReplanAndCommit(*cluster, "0.0");
  ASSERT_FALSE(version.empty());
  const int64_t epoch = cluster->GetLayout()->epoch();

  cluster->StopPlanner();  // SIGKILL: no drain, agents lose the stream
  ASSERT_TRUE(cluster->StartPlanner().ok());
  ASSERT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  auto status = cluster->GetLayout();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->committed().version(), version);
  EXPECT_GT(status->epoch(), epoch);

  // Agents reconnected with the committed version: no prepare reaches anyone.
  ASSERT_TRUE(cluster->WaitForWindows(4, absl::Seconds(30)));
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(cluster->GetLayout()->committed().version(), version);
  for (int gpu = 0; gpu < 8; ++gpu) {
    const std::string log = cluster->worker(gpu).Log();
    EXPECT_EQ(log.find("status READY", log.rfind("FLIPPED")), std::string::npos) << "gpu " << gpu;
  }
}

TEST(ClusterTest, AStalePlannerIsFencedOff) {
  auto cluster = StartedCluster();
  const std::string version = ReplanAndCommit(*cluster, "0.0");
  ASSERT_FALSE(version.empty());
  // The agents see epoch 2 from a restarted planner...
  cluster->StopPlanner();
  ASSERT_TRUE(cluster->StartPlanner().ok());
  ASSERT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  // ...then a planner that lost its state starts at epoch 1: whatever it
  // pushes is refused and nothing moves.
  cluster->StopPlanner();
  std::remove(cluster->state_path().c_str());
  ASSERT_TRUE(cluster->StartPlanner().ok());
  // The agents' hellos carry epoch 2 > 1: the stale planner fences itself
  // before pushing (an agent would refuse its pushes with STALE_EPOCH too).
  (void)cluster->Replan(/*force=*/true);
  EXPECT_TRUE(WaitFor(
      [&] { return cluster->planner().Log().find("another planner leads") != std::string::npos; },
      absl::Seconds(20)))
      << cluster->planner().Log();
  (void)cluster->Replan(/*force=*/true);
  absl::SleepFor(absl::Seconds(1));
  for (int gpu = 0; gpu < 8; ++gpu) {
    const std::string log = cluster->worker(gpu).Log();
    EXPECT_EQ(log.find("status READY", log.rfind("FLIPPED")), std::string::npos) << "gpu " << gpu;
  }
}

TEST(ClusterTest, AMoveBiggerThanTheStagingHeadroomCommitsInSteps) {
  // Expert memory for the grown layout (6 layers x 4 experts + R = 2 slots)
  // plus 2 arriving experts of 4096 bytes: every worker reports a headroom of
  // 2 to 4 experts, far less than a re-plan from the initial layout moves.
  const std::vector<std::string> small_memory = {"--memory_bytes=" + std::to_string(28 * 4096)};
  auto cluster = std::make_unique<LocalCluster>(ClusterOptions{});
  ASSERT_TRUE(cluster->StartPlanner().ok());
  for (int node = 0; node < 2; ++node) ASSERT_TRUE(cluster->StartAgent(node).ok());
  for (int gpu = 0; gpu < 8; ++gpu) ASSERT_TRUE(cluster->StartWorker(gpu, small_memory).ok());
  ASSERT_TRUE(cluster->WaitForAgentsConnected(absl::Seconds(30)));
  ASSERT_TRUE(cluster->WaitForMeasuredBalance(absl::Seconds(30)).ok());

  ASSERT_FALSE(ReplanAndCommit(*cluster, "0.0").empty());
  // The planner goes on by itself, one committed version per step, until the
  // chosen frontier point is reached.
  std::string last;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto status = cluster->GetLayout();
        if (!status.ok() || !status->pending_version().empty()) return false;
        const bool settled =
            status->committed().version() == last &&
            cluster->planner().Log().find("continuing towards") != std::string::npos;
        last = status->committed().version();
        absl::SleepFor(absl::Milliseconds(700));  // longer than a step takes
        return settled;
      },
      absl::Seconds(60)))
      << cluster->planner().Log();
  const std::string log = cluster->planner().Log();
  EXPECT_NE(log.find("step 2, to point"), std::string::npos) << log;
  EXPECT_NE(log.find("staging headroom"), std::string::npos);
  EXPECT_EQ(log.find("could not start"), std::string::npos) << log;
  // Every step stayed within the workers' memory, and every slot of the
  // final layout verified on every worker.
  EXPECT_TRUE(WaitFor([&] { return cluster->AllWorkersVerified(last); }, absl::Seconds(15)));
  for (int gpu = 0; gpu < 8; ++gpu) {
    EXPECT_EQ(cluster->worker(gpu).Log().find("does not fit"), std::string::npos) << "gpu " << gpu;
  }
}

// A process on the node claiming GPU `gpu` with a model of `num_layers`
// layers: how the agent ends its stream (DEADLINE_EXCEEDED if it accepts it).
grpc::Status ClaimGpu(const LocalCluster& cluster, int node, int gpu, int num_layers) {
  auto stub = craft::v1::NodeAgent::NewStub(
      grpc::CreateChannel(absl::StrCat("unix:", cluster.dir(), "/agent", node, ".sock"),
                          grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  auto stream = stub->Attach(&context);
  craft::v1::WorkerMessage message;
  craft::v1::WorkerHello* hello = message.mutable_hello();
  hello->set_gpu(gpu);
  hello->set_transfer_endpoint("127.0.0.1:1");
  hello->mutable_model()->set_num_layers(num_layers);
  hello->mutable_model()->set_num_experts(cluster.options().num_experts);
  hello->mutable_model()->set_top_k(cluster.options().top_k);
  hello->mutable_model()->set_bytes_per_expert(4096);
  stream->Write(message);
  craft::v1::WorkerCommand ignored;
  while (stream->Read(&ignored)) {
  }
  return stream->Finish();
}

int CountOf(const std::string& text, const std::string& what) {
  int count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

TEST(ClusterTest, TheModelComesFromThePlannerNotFromTheFirstWorker) {
  ClusterOptions options;
  options.agent_model_flags = false;  // as the demo and the shipped DaemonSet
  LocalCluster cluster(options);
  // Agents up before the planner: they do not know the model yet, so a
  // process declaring 13 layers is not taken at its word, only told to retry.
  for (int node = 0; node < options.num_nodes; ++node) ASSERT_TRUE(cluster.StartAgent(node).ok());
  grpc::Status early = ClaimGpu(cluster, 0, 0, 13);
  EXPECT_EQ(early.error_code(), grpc::StatusCode::UNAVAILABLE) << early.error_message();
  ASSERT_TRUE(cluster.StartPlanner().ok());
  ASSERT_TRUE(cluster.WaitForAgentsConnected(absl::Seconds(30)));
  // The planner's Welcome stated the model: the impostor is refused as such,
  // and the real workers all attach and serve.
  EXPECT_TRUE(WaitFor(
      [&] {
        return ClaimGpu(cluster, 0, 0, 13).error_code() == grpc::StatusCode::INVALID_ARGUMENT;
      },
      absl::Seconds(10)));
  for (int gpu = 0; gpu < cluster.num_gpus(); ++gpu) ASSERT_TRUE(cluster.StartWorker(gpu).ok());
  ASSERT_TRUE(cluster.WaitForMeasuredBalance(absl::Seconds(30)).ok());
  EXPECT_FALSE(ReplanAndCommit(cluster, "0.0").empty());

  // A second claim to an attached GPU is refused; its worker is untouched.
  EXPECT_EQ(ClaimGpu(cluster, 0, 0, options.num_layers).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // The planner goes away and agent 0 restarts: its state file kept the
  // model, so its workers attach again without a planner.
  constexpr char kUnknown[] = "the model shape is not known yet";
  const int attached_before = CountOf(cluster.agent(0).Log(), "worker attached: gpu ");
  const int unknown_before = CountOf(cluster.agent(0).Log(), kUnknown);
  EXPECT_EQ(unknown_before, 1) << "its first start, before the planner was up";
  cluster.StopPlanner();
  ASSERT_TRUE(cluster.Restart(Role::kAgent, 0).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        return CountOf(cluster.agent(0).Log(), "worker attached: gpu ") >=
               attached_before + options.gpus_per_node;
      },
      absl::Seconds(20)))
      << cluster.agent(0).Log();
  EXPECT_EQ(CountOf(cluster.agent(0).Log(), kUnknown), unknown_before);
}

TEST(ClusterTest, GarbageOnTheSocketsHurtsNobody) {
  auto cluster = StartedCluster();
  // Raw bytes into the agent's Unix socket and the planner's TCP port.
  const std::string junk = "\x16\x03\x01 this is not http2 \xff\xfe\x00\x01";
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string path = cluster->dir() + "/agent0.sock";
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_GT(::write(fd, junk.data(), junk.size()), 0);
    ::close(fd);
  }
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string port = cluster->planner_address().substr(10);
    address.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_GT(::write(fd, junk.data(), junk.size()), 0);
    ::close(fd);
  }
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(cluster->planner().Running());
  EXPECT_TRUE(cluster->agent(0).Running());
  // Everything still works end to end.
  const std::string version = ReplanAndCommit(*cluster, "0.0");
  EXPECT_FALSE(version.empty());
}

}  // namespace
}  // namespace craft::testing
