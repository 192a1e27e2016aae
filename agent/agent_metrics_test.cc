#include "agent/agent_metrics.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/promtool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

using ::testing::HasSubstr;

class NullPlanner : public PlannerChannel {
 public:
  void Send(const craft::v1::AgentMessage&) override {}
  void Reconnect() override {}
};

class NullWorker : public WorkerChannel {
 public:
  void Send(const craft::v1::WorkerCommand&) override {}
  void Close(const absl::Status&) override {}
};

craft::v1::WorkerHello Hello(int gpu) {
  craft::v1::WorkerHello hello;
  hello.set_gpu(gpu);
  hello.set_transfer_endpoint("127.0.0.1:1");
  hello.mutable_model()->set_num_layers(2);
  hello.mutable_model()->set_num_experts(4);
  hello.mutable_model()->set_top_k(2);
  return hello;
}

// GPU `gpu`'s window `id` with two slots per layer counting 10 and 5.
craft::v1::GpuWindow Window(int gpu, int64_t id, int layers = 2) {
  craft::v1::GpuWindow window;
  window.set_gpu(gpu);
  window.set_window_id(id);
  window.set_layout_version("0.0");
  for (int l = 0; l < layers; ++l) {
    window.add_layers()->add_counts(10);
    window.mutable_layers(l)->add_counts(5);
  }
  return window;
}

class AgentMetricsTest : public ::testing::Test {
 protected:
  AgentMetricsTest() {
    NodeState::Options options;
    options.node = "node-a";
    options.gpus = {2, 3};
    options.model_check = {2, 4, 2};
    auto node = NodeState::Create(options, &clock_, &store_, &planner_);
    EXPECT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    metrics_ = std::make_shared<AgentMetrics>(options.gpus);
    metrics_->Watch(node_.get());
  }
  ~AgentMetricsTest() override { metrics_->Watch(nullptr); }

  FakeClock clock_;
  MemoryStateStore store_;
  NullPlanner planner_;
  NullWorker worker_;
  std::unique_ptr<NodeState> node_;
  std::shared_ptr<AgentMetrics> metrics_;
};

TEST_F(AgentMetricsTest, ExportsTheNodeAndPassesPromtool) {
  ASSERT_TRUE(node_->AttachWorker(Hello(2), &worker_).ok());
  node_->OnPlannerConnected();
  node_->OnPlannerDisconnected();
  node_->OnPlannerConnected();
  ASSERT_TRUE(node_->OnWorkerWindow(2, Window(2, 5)).ok());
  ASSERT_TRUE(node_->OnWorkerWindow(2, Window(2, 6)).ok());
  ASSERT_TRUE(node_->OnWorkerWindow(2, Window(2, 6)).ok());     // repeated id: dropped
  ASSERT_TRUE(node_->OnWorkerWindow(2, Window(2, 7, 1)).ok());  // one layer: dropped

  const std::string text = metrics_->Serialize();
  for (const char* series : {
           "craft_agent_planner_connected 1",
           "craft_agent_planner_reconnects_total 1",
           "craft_agent_planner_disconnects_total 1",
           "craft_agent_configured_gpus 2",
           "craft_agent_workers_attached 1",
           "craft_agent_gpu_worker_attached{gpu=\"2\"} 1",
           "craft_agent_gpu_worker_attached{gpu=\"3\"} 0",
           "craft_agent_gpu_expert_tokens_total{gpu=\"2\"} 60",
           "craft_agent_gpu_expert_tokens_total{gpu=\"3\"} 0",
           "craft_agent_load_windows_received_total 4",
           "craft_agent_load_windows_rejected_total{reason=\"out_of_order\"} 1",
           "craft_agent_load_windows_rejected_total{reason=\"malformed\"} 1",
           "craft_agent_committed_layout_seq 0",
           "craft_agent_acks_sent_total{phase=\"committed\"} 0",
           "craft_agent_nacks_sent_total{code=\"worker_missing\"} 0",
       }) {
    EXPECT_THAT(text, HasSubstr(series)) << series;
  }
  const absl::Status lint = craft::testing::PromtoolCheckMetrics(text);
  if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
  EXPECT_TRUE(lint.ok()) << lint << "\n" << text;
}

TEST_F(AgentMetricsTest, WorkerDetachIsSeenAtTheNextScrape) {
  ASSERT_TRUE(node_->AttachWorker(Hello(3), &worker_).ok());
  EXPECT_THAT(metrics_->Serialize(), HasSubstr("craft_agent_gpu_worker_attached{gpu=\"3\"} 1"));
  node_->DetachWorker(3, &worker_);
  EXPECT_THAT(metrics_->Serialize(), HasSubstr("craft_agent_gpu_worker_attached{gpu=\"3\"} 0"));
}

class ClosingHandler final : public ConnectionHandler {
 public:
  void OnConnection(int fd, const PeerCredentials&) override { ::close(fd); }
};

// Connects to `path` and waits until the listener closed the connection.
void ConnectAndWaitForClose(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  char byte;
  EXPECT_EQ(::read(fd, &byte, 1), 0);
  ::close(fd);
}

TEST_F(AgentMetricsTest, CountsConnectionsRefusedOnTheSocket) {
  char dir[] = "/tmp/craft_metrics_test_XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ClosingHandler handler;
  UnixSocketListener::Options options;
  options.path = std::string(dir) + "/agent.sock";
  options.peers = PeerPolicy{/*uid=*/12345, /*gid=*/12345};
  absl::StatusOr<std::unique_ptr<UnixSocketListener>> listener =
      UnixSocketListener::Listen(options, &handler);
  ASSERT_TRUE(listener.ok()) << listener.status();
  (*listener)->Start();
  metrics_->Watch(node_.get(), listener->get());
  ConnectAndWaitForClose(options.path);
  ConnectAndWaitForClose(options.path);
  const std::string text = metrics_->Serialize();
  EXPECT_THAT(text, HasSubstr("craft_agent_socket_connections_total{result=\"refused\"} 2"));
  EXPECT_THAT(text, HasSubstr("craft_agent_socket_connections_total{result=\"accepted\"} 0"));
  metrics_->Watch(nullptr);
  listener->reset();
  ::rmdir(dir);
}

}  // namespace
}  // namespace craft::agent
