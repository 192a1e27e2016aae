// Workers as the node agent sees them: a fake NodeAgent on a Unix socket
// attaches real Worker instances (CPU backend, real transfer servers).
#include "gpu_worker/worker.h"

#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "craft/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "gpu_worker/backend_factory.h"
#include "gpu_worker/test_util.h"
#include "gpu_worker/traffic.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;
using ::testing::HasSubstr;

constexpr int64_t kBytes = 512;
constexpr int kTokens = 64;
constexpr int kTopK = 2;
constexpr absl::Duration kWait = absl::Seconds(20);

// Records what workers send and sends them commands. The sync API is enough
// for a test: one handler thread per attached worker.
class FakeAgent final : public craft::v1::NodeAgent::Service {
 public:
  explicit FakeAgent(const std::string& socket) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeAgent() override { Stop(); }

  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    server_.reset();
  }

  grpc::Status Attach(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<WorkerCommand, WorkerMessage>* stream) override {
    WorkerMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello first");
    }
    const int gpu = message.hello().gpu();
    {
      absl::MutexLock lock(&mu_);
      streams_[gpu] = stream;
      received_.emplace_back(gpu, message);
      received_cv_.SignalAll();
    }
    while (stream->Read(&message)) {
      absl::MutexLock lock(&mu_);
      received_.emplace_back(gpu, message);
      received_cv_.SignalAll();
    }
    absl::MutexLock lock(&mu_);
    if (streams_[gpu] == stream) streams_.erase(gpu);
    return grpc::Status::OK;
  }

  bool Send(int gpu, const WorkerCommand& command) {
    absl::MutexLock lock(&mu_);
    const auto it = streams_.find(gpu);
    return it != streams_.end() && it->second->Write(command);
  }

  // The first message from `gpu` that `match` accepts, waiting for it.
  std::optional<WorkerMessage> WaitFor(int gpu, std::function<bool(const WorkerMessage&)> match) {
    const absl::Time deadline = absl::Now() + kWait;
    absl::MutexLock lock(&mu_);
    while (true) {
      for (const auto& [from, message] : received_) {
        if (from == gpu && match(message)) return message;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      received_cv_.WaitWithDeadline(&mu_, deadline);
    }
  }

  bool AnyFrom(int gpu, std::function<bool(const WorkerMessage&)> match) {
    absl::MutexLock lock(&mu_);
    for (const auto& [from, message] : received_) {
      if (from == gpu && match(message)) return true;
    }
    return false;
  }

 private:
  absl::Mutex mu_;
  std::map<int, grpc::ServerReaderWriter<WorkerCommand, WorkerMessage>*> streams_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, WorkerMessage>> received_ ABSL_GUARDED_BY(mu_);
  absl::CondVar received_cv_;
  std::unique_ptr<grpc::Server> server_;
};

std::function<bool(const WorkerMessage&)> Hello() {
  return [](const WorkerMessage& m) { return m.has_hello(); };
}

std::function<bool(const WorkerMessage&)> Status(const std::string& version,
                                                 craft::v1::WorkerState state) {
  return [=](const WorkerMessage& m) {
    return m.has_status() && m.status().version() == version && m.status().state() == state;
  };
}

std::function<bool(const WorkerMessage&)> Window(const std::string& version, int64_t min_id = 0) {
  return [=](const WorkerMessage& m) {
    return m.has_window() && m.window().layout_version() == version &&
           m.window().window_id() >= min_id;
  };
}

WorkerCommand Commit(const std::string& version) {
  WorkerCommand command;
  command.mutable_commit()->set_version(version);
  return command;
}

WorkerCommand Abort(const std::string& version) {
  WorkerCommand command;
  command.mutable_abort()->set_version(version);
  return command;
}

WorkerCommand PrepareCommand(craft::v1::Prepare prepare) {
  WorkerCommand command;
  *command.mutable_prepare() = std::move(prepare);
  return command;
}

std::vector<size_t> SlotsPerLayer(const craft::v1::GpuWindow& window) {
  std::vector<size_t> slots;
  for (const auto& layer : window.layers()) slots.push_back(layer.counts_size());
  return slots;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/craft-worker-test-XXXXXX";  // short: socket paths are limited
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_ = dir_ + "/agent.sock";
    agent_ = std::make_unique<FakeAgent>(socket_);
  }

  void TearDown() override {
    workers_.clear();
    agent_.reset();
    unlink(socket_.c_str());
    rmdir(dir_.c_str());
  }

  void StartWorker(int gpu) {
    WorkerOptions options;
    options.shape.gpu = gpu;
    options.shape.cluster = {2, 1};
    options.shape.num_layers = 2;
    options.shape.num_experts = 4;
    options.shape.top_k = kTopK;
    options.shape.bytes_per_expert = kBytes;
    options.agent = "unix:" + socket_;
    options.window = absl::Milliseconds(50);
    options.link.min_backoff = absl::Milliseconds(20);
    options.link.max_backoff = absl::Milliseconds(200);
    options.security.insecure = true;  // mutual TLS is transfer_test's
    BackendOptions backend_options;
    backend_options.bytes_per_expert = kBytes;
    backend_options.capacity_bytes = 0;  // unlimited
    backend_options.security = options.security;
    absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend("cpu", backend_options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    absl::StatusOr<std::unique_ptr<Worker>> worker =
        Worker::Create(std::move(options), *std::move(backend),
                       testing::TwoGpuTraffic(kTokens, kTopK), Clock::Real());
    ASSERT_TRUE(worker.ok()) << worker.status();
    ASSERT_TRUE((*worker)->Start().ok());
    workers_[gpu] = *std::move(worker);
  }

  // Starts both workers and returns their transfer endpoints.
  std::map<int, std::string> StartBoth() {
    StartWorker(0);
    StartWorker(1);
    std::map<int, std::string> endpoints;
    for (int gpu : {0, 1}) {
      const std::optional<WorkerMessage> hello = agent_->WaitFor(gpu, Hello());
      EXPECT_TRUE(hello.has_value());
      if (hello) endpoints[gpu] = hello->hello().transfer_endpoint();
    }
    return endpoints;
  }

  void SendBoth(const WorkerCommand& command) {
    for (int gpu : {0, 1}) ASSERT_TRUE(agent_->Send(gpu, command)) << "gpu " << gpu;
  }

  // Per layer, the tokens both GPUs counted in window `id` of `version`.
  std::vector<int64_t> ClusterCounts(const std::string& version, int64_t id) {
    std::vector<int64_t> totals;
    for (int gpu : {0, 1}) {
      const std::optional<WorkerMessage> window = agent_->WaitFor(gpu, [&](const WorkerMessage& m) {
        return Window(version)(m) && m.window().window_id() == id;
      });
      if (!window) return {};
      totals.resize(window->window().layers_size(), 0);
      for (int l = 0; l < window->window().layers_size(); ++l) {
        for (int64_t c : window->window().layers(l).counts()) totals[l] += c;
      }
    }
    return totals;
  }

  std::string dir_;
  std::string socket_;
  std::unique_ptr<FakeAgent> agent_;
  std::map<int, std::unique_ptr<Worker>> workers_;
};

TEST_F(WorkerTest, AttachesWithHelloAndReportsAlignedWindows) {
  StartWorker(1);
  const std::optional<WorkerMessage> hello = agent_->WaitFor(1, Hello());
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->hello().gpu(), 1);
  EXPECT_EQ(hello->hello().committed_version(), "0.0");
  EXPECT_EQ(hello->hello().model().num_layers(), 2);
  EXPECT_EQ(hello->hello().model().num_experts(), 4);
  EXPECT_EQ(hello->hello().model().top_k(), kTopK);
  EXPECT_EQ(hello->hello().model().bytes_per_expert(), kBytes);
  EXPECT_EQ(hello->hello().transfer_endpoint(), workers_[1]->transfer_endpoint());
  EXPECT_THAT(hello->hello().transfer_endpoint(), HasSubstr("127.0.0.1:"));

  StartWorker(0);
  const std::optional<WorkerMessage> first = agent_->WaitFor(0, Window("0.0"));
  ASSERT_TRUE(first.has_value());
  const craft::v1::GpuWindow& window = first->window();
  EXPECT_EQ(window.gpu(), 0);
  EXPECT_EQ(window.duration_ms(), 50);
  EXPECT_EQ(window.start_unix_ms(), window.window_id() * 50);
  EXPECT_EQ(SlotsPerLayer(window), (std::vector<size_t>{2, 2}));
  // Both workers route the same tokens: together they count all of them.
  EXPECT_EQ(ClusterCounts("0.0", window.window_id() + 1),
            (std::vector<int64_t>{kTokens * kTopK, kTokens * kTopK}));
}

TEST_F(WorkerTest, AppliesALayoutInTwoPhases) {
  const std::map<int, std::string> endpoints = StartBoth();
  SendBoth(
      PrepareCommand(testing::MakePrepare(testing::InitialTwoGpuLayout(), "0.0",
                                          testing::NextTwoGpuLayout(), "1.1", endpoints, kBytes)));
  for (int gpu : {0, 1}) {
    const std::optional<WorkerMessage> ready =
        agent_->WaitFor(gpu, Status("1.1", craft::v1::READY));
    ASSERT_TRUE(ready.has_value()) << "gpu " << gpu;
    EXPECT_EQ(ready->status().bytes_received(), 2 * kBytes);
  }
  for (int gpu : {0, 1}) EXPECT_FALSE(agent_->AnyFrom(gpu, Window("1.1"))) << "routed early";

  SendBoth(Commit("1.1"));
  int64_t first_new_window = 0;
  for (int gpu : {0, 1}) {
    ASSERT_TRUE(agent_->WaitFor(gpu, Status("1.1", craft::v1::FLIPPED)));
    const std::optional<WorkerMessage> window = agent_->WaitFor(gpu, Window("1.1"));
    ASSERT_TRUE(window.has_value());
    EXPECT_EQ(SlotsPerLayer(window->window()), (std::vector<size_t>{3, 2}));
    first_new_window = std::max(first_new_window, window->window().window_id());
  }
  EXPECT_EQ(workers_[0]->serving_version(), "1.1");
  EXPECT_EQ(ClusterCounts("1.1", first_new_window + 1),
            (std::vector<int64_t>{kTokens * kTopK, kTokens * kTopK}));

  // A repeated commit is answered; commits and aborts that do not apply fail.
  ASSERT_TRUE(agent_->Send(0, Commit("7.7")));
  ASSERT_TRUE(agent_->Send(0, Abort("1.1")));
  ASSERT_TRUE(agent_->Send(0, Abort("8.8")));
  const auto failed = [&](const std::string& version) {
    return agent_->WaitFor(0, Status(version, craft::v1::FAILED));
  };
  EXPECT_THAT(failed("7.7")->status().error(), HasSubstr("not staged"));
  EXPECT_THAT(failed("1.1")->status().error(), HasSubstr("serving"));
  EXPECT_THAT(failed("8.8")->status().error(), HasSubstr("unknown version"));

  // Prepare then abort: the staged version goes, 1.1 keeps serving.
  ASSERT_TRUE(agent_->Send(0, PrepareCommand(testing::MakePrepare(
                                  testing::NextTwoGpuLayout(), "1.1",
                                  testing::InitialTwoGpuLayout(), "1.2", endpoints, kBytes))));
  ASSERT_TRUE(agent_->Send(0, Abort("1.2")));
  ASSERT_TRUE(agent_->WaitFor(0, Status("1.2", craft::v1::DROPPED)));
  EXPECT_EQ(workers_[0]->serving_version(), "1.1");
  ASSERT_TRUE(agent_->Send(0, Commit("1.2")));
  EXPECT_TRUE(agent_->WaitFor(0, Status("1.2", craft::v1::FAILED)));
}

TEST_F(WorkerTest, AFailedPrepareLeavesTheOldLayoutServing) {
  std::map<int, std::string> endpoints = StartBoth();
  endpoints.erase(0);  // GPU 1's sources on GPU 0 become unreachable
  ASSERT_TRUE(agent_->Send(1, PrepareCommand(testing::MakePrepare(
                                  testing::InitialTwoGpuLayout(), "0.0",
                                  testing::NextTwoGpuLayout(), "1.1", endpoints, kBytes))));
  const std::optional<WorkerMessage> failed = agent_->WaitFor(1, Status("1.1", craft::v1::FAILED));
  ASSERT_TRUE(failed.has_value());
  EXPECT_THAT(failed->status().error(), HasSubstr("missing source"));
  ASSERT_TRUE(agent_->Send(1, Abort("1.1")));
  EXPECT_TRUE(agent_->WaitFor(1, Status("1.1", craft::v1::DROPPED)));
  EXPECT_EQ(workers_[1]->serving_version(), "0.0");
  EXPECT_TRUE(agent_->WaitFor(1, Window("0.0")));
}

TEST_F(WorkerTest, ReattachesWhenTheAgentRestarts) {
  StartWorker(0);
  ASSERT_TRUE(agent_->WaitFor(0, Hello()));
  agent_->Stop();
  agent_ = std::make_unique<FakeAgent>(socket_);  // a new agent on the same socket
  const std::optional<WorkerMessage> hello = agent_->WaitFor(0, Hello());
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->hello().committed_version(), "0.0");
  EXPECT_TRUE(agent_->WaitFor(0, Window("0.0")));
}

}  // namespace
}  // namespace craft::gpu_worker
