// The agent over real gRPC, in one process: its NodeAgent service on a Unix
// socket with fake workers (sync clients), and a fake planner serving
// AgentGateway.Connect on 127.0.0.1:0.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "agent/worker_service.h"
#include "common/file_io.h"
#include "craft/v1/agent.grpc.pb.h"
#include "craft/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "wire/layout_proto.h"

namespace craft::agent {
namespace {

using craft::v1::AgentMessage;
using craft::v1::PlannerMessage;
using craft::v1::WorkerCommand;
using craft::v1::WorkerMessage;

constexpr absl::Duration kWait = absl::Seconds(10);

// ---------------------------------------------------------------- fake planner

class FakePlanner final : public craft::v1::AgentGateway::CallbackService {
 public:
  grpc::ServerBidiReactor<AgentMessage, PlannerMessage>* Connect(
      grpc::CallbackServerContext*) override {
    auto* stream = new Stream(this);
    absl::MutexLock lock(&mu_);
    current_ = stream;
    ++streams_;
    return stream;
  }

  // The next message the agent sent, in order, across streams.
  std::optional<AgentMessage> Next() {
    absl::MutexLock lock(&mu_);
    auto has = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !received_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has), kWait)) return std::nullopt;
    AgentMessage message = std::move(received_.front());
    received_.pop_front();
    return message;
  }

  // The next message that is not a load.
  std::optional<AgentMessage> NextAnswer() {
    while (std::optional<AgentMessage> message = Next()) {
      if (!message->has_load()) return message;
    }
    return std::nullopt;
  }

  void Push(const PlannerMessage& message) {
    absl::MutexLock lock(&mu_);
    ASSERT_NE(current_, nullptr);
    current_->Push(message);
  }

  void EndStream(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr) current_->End(status);
  }

  bool WaitForStreams(int count) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kWait);
  }

  bool WaitForNoStream() {
    absl::MutexLock lock(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return current_ == nullptr; };
    return mu_.AwaitWithTimeout(absl::Condition(&none), kWait);
  }

 private:
  class Stream final : public grpc::ServerBidiReactor<AgentMessage, PlannerMessage> {
   public:
    explicit Stream(FakePlanner* planner) : planner_(planner) { StartRead(&in_); }

    void Push(const PlannerMessage& message) {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      out_.push_back(message);
      MaybeWrite();
    }
    void End(const grpc::Status& status) {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      status_ = status;
      if (!writing_) Finish(status_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        End(grpc::Status::OK);
        return;
      }
      {
        absl::MutexLock lock(&planner_->mu_);
        planner_->received_.push_back(in_);
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finished_) {
        Finish(status_);
        return;
      }
      MaybeWrite();
    }
    void OnCancel() override { End(grpc::Status::CANCELLED); }
    void OnDone() override {
      {
        absl::MutexLock lock(&planner_->mu_);
        if (planner_->current_ == this) planner_->current_ = nullptr;
      }
      { absl::MutexLock lock(&mu_); }
      delete this;
    }

   private:
    void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (writing_ || out_.empty()) return;
      writing_ = true;
      current_out_ = out_.front();
      out_.pop_front();
      StartWrite(&current_out_);
    }

    FakePlanner* const planner_;
    AgentMessage in_;
    absl::Mutex mu_;
    std::deque<PlannerMessage> out_ ABSL_GUARDED_BY(mu_);
    PlannerMessage current_out_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status status_ ABSL_GUARDED_BY(mu_);
  };

  absl::Mutex mu_;
  std::deque<AgentMessage> received_ ABSL_GUARDED_BY(mu_);
  Stream* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---------------------------------------------------------------- fake worker

class FakeWorker {
 public:
  explicit FakeWorker(const std::shared_ptr<grpc::Channel>& channel)
      : stub_(craft::v1::NodeAgent::NewStub(channel)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Attach(&context_);
  }

  bool Send(const WorkerMessage& message) { return stream_->Write(message); }
  // Sends a hello and waits for the agent's answer: true when accepted.
  bool Attach(const craft::v1::WorkerHello& hello) {
    WorkerMessage message;
    *message.mutable_hello() = hello;
    if (!Send(message)) return false;
    // The agent answers an accepted hello with initial metadata; a refused
    // one ends the stream without it.
    stream_->WaitForInitialMetadata();
    const auto& metadata = context_.GetServerInitialMetadata();
    auto it = metadata.find(kAttachedMetadataKey);
    return it != metadata.end() && it->second == std::to_string(hello.gpu());
  }
  std::optional<WorkerCommand> Read() {
    WorkerCommand command;
    if (!stream_->Read(&command)) return std::nullopt;
    return command;
  }
  void Report(const std::string& version, craft::v1::WorkerState state) {
    WorkerMessage message;
    message.mutable_status()->set_version(version);
    message.mutable_status()->set_state(state);
    ASSERT_TRUE(Send(message));
  }
  void Window(int gpu, int64_t id) {
    WorkerMessage message;
    craft::v1::GpuWindow* window = message.mutable_window();
    window->set_gpu(gpu);
    window->set_window_id(id);
    window->set_layout_version("0.0");
    for (int l = 0; l < 2; ++l) window->add_layers()->add_counts(5);
    ASSERT_TRUE(Send(message));
  }
  // The worker process dies: its stream is cancelled.
  void Vanish() { context_.TryCancel(); }
  // Reads until the agent ends the stream; its status.
  grpc::Status Ended() {
    WorkerCommand ignored;
    while (stream_->Read(&ignored)) {
    }
    return stream_->Finish();
  }

 private:
  std::unique_ptr<craft::v1::NodeAgent::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<WorkerMessage, WorkerCommand>> stream_;
};

craft::v1::WorkerHello Hello(int gpu) {
  craft::v1::WorkerHello hello;
  hello.set_gpu(gpu);
  hello.set_memory_bytes(1 << 20);
  hello.set_transfer_endpoint("127.0.0.1:" + std::to_string(9100 + gpu));
  hello.mutable_model()->set_num_layers(2);
  hello.mutable_model()->set_num_experts(4);
  hello.mutable_model()->set_top_k(2);
  return hello;
}

PlannerMessage Prepare(int64_t epoch, const std::string& nonce, const std::string& version) {
  PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  absl::StatusOr<planner::Layout> layout = planner::ContiguousLayout(2, 4, {2, 1});
  *message.mutable_prepare()->mutable_layout() = LayoutToProto(*layout, version);
  message.mutable_prepare()->set_timeout_ms(10'000);
  return message;
}

PlannerMessage Commit(int64_t epoch, const std::string& nonce, const std::string& version) {
  PlannerMessage message;
  message.set_epoch(epoch);
  message.set_nonce(nonce);
  message.mutable_commit()->set_version(version);
  return message;
}

// ---------------------------------------------------------------- fixture

class AgentGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&planner_);
    planner_server_ = builder.BuildAndStart();
    ASSERT_NE(planner_server_, nullptr);

    // Bazel's TEST_TMPDIR is too long for a Unix socket path.
    char dir[] = "/tmp/craft_agent_test_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    AgentOptions options;
    options.node.node = "node-a";
    options.node.gpus = {0, 1};
    options.node.model_check = {2, 4, 2};
    options.socket_path = dir_ + "/agent.sock";
    options.planner_target = "127.0.0.1:" + std::to_string(port);
    options.security.insecure = true;
    options.ready_file = dir_ + "/ready";
    options.backoff.initial = absl::Milliseconds(10);
    options.backoff.max = absl::Milliseconds(100);
    options_ = options;
    absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(options, Clock::Real());
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = *std::move(agent);
    channel_ =
        grpc::CreateChannel("unix:" + options.socket_path, grpc::InsecureChannelCredentials());
  }

  // Another agent like the fixture's, on `socket` (in dir_), as `change`
  // makes it; its workers' channel is `*channel`.
  std::unique_ptr<Agent> StartAnother(const std::string& socket,
                                      const std::function<void(AgentOptions&)>& change,
                                      std::shared_ptr<grpc::Channel>* channel) {
    AgentOptions options = options_;
    options.node.node = "node-b";
    options.socket_path = dir_ + "/" + socket;
    options.ready_file.clear();
    change(options);
    absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Start(options, Clock::Real());
    EXPECT_TRUE(agent.ok()) << agent.status();
    *channel =
        grpc::CreateChannel("unix:" + options.socket_path, grpc::InsecureChannelCredentials());
    return agent.ok() ? *std::move(agent) : nullptr;
  }

  void TearDown() override {
    agent_.reset();
    planner_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    ::unlink((dir_ + "/ready").c_str());
    ::rmdir(dir_.c_str());
  }

  // Two attached workers and a connected planner that has read the hello.
  void AttachAndConnect(FakeWorker& w0, FakeWorker& w1,
                        const craft::v1::WorkerHello& hello0 = Hello(0)) {
    ASSERT_TRUE(w0.Attach(hello0));
    ASSERT_TRUE(w1.Attach(Hello(1)));
    absl::Notification never;
    ASSERT_TRUE(agent_->WaitForWorkers(absl::Now() + kWait, &never));
    agent_->ConnectPlanner();
    std::optional<AgentMessage> hello = planner_.Next();
    ASSERT_TRUE(hello.has_value());
    ASSERT_TRUE(hello->has_hello()) << hello->ShortDebugString();
    EXPECT_EQ(hello->hello().node(), "node-a");
    ASSERT_EQ(hello->hello().gpus_size(), 2);
    EXPECT_EQ(hello->hello().gpus(1).transfer_endpoint(), "127.0.0.1:9101");
    EXPECT_EQ(hello->hello().committed_version(), "0.0");
    EXPECT_EQ(hello->hello().gpus(0).transfer_group_id(), hello0.transfer_group_id());
  }

  FakePlanner planner_;
  std::unique_ptr<grpc::Server> planner_server_;
  std::string dir_;
  AgentOptions options_;  // the fixture agent's
  std::unique_ptr<Agent> agent_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(AgentGrpcTest, ReadyFileNamesTheSocket) {
  EXPECT_EQ(ReadFileToString(dir_ + "/ready").value_or(""),
            "socket=" + agent_->socket_path() + "\n");
}

TEST_F(AgentGrpcTest, PrepareCommitAndReconnectOverRealStreams) {
  FakeWorker w0(channel_), w1(channel_);
  AttachAndConnect(w0, w1);

  // Windows of one id from both GPUs arrive as one NodeLoad.
  w0.Window(0, 1);
  w1.Window(1, 1);
  std::optional<AgentMessage> load = planner_.Next();
  ASSERT_TRUE(load.has_value());
  ASSERT_TRUE(load->has_load()) << load->ShortDebugString();
  EXPECT_EQ(load->load().gpus_size(), 2);

  planner_.Push(Prepare(1, "n1", "1.1"));
  for (FakeWorker* w : {&w0, &w1}) {
    std::optional<WorkerCommand> command = w->Read();
    ASSERT_TRUE(command.has_value());
    ASSERT_TRUE(command->has_prepare());
    EXPECT_EQ(command->prepare().layout().version(), "1.1");
    w->Report("1.1", craft::v1::READY);
  }
  std::optional<AgentMessage> prepared = planner_.NextAnswer();
  ASSERT_TRUE(prepared.has_value());
  ASSERT_TRUE(prepared->has_ack()) << prepared->ShortDebugString();
  EXPECT_EQ(prepared->ack().nonce(), "n1");
  EXPECT_EQ(prepared->ack().phase(), craft::v1::PREPARED);

  planner_.Push(Commit(1, "n2", "1.1"));
  for (FakeWorker* w : {&w0, &w1}) {
    std::optional<WorkerCommand> command = w->Read();
    ASSERT_TRUE(command.has_value());
    ASSERT_TRUE(command->has_commit());
    w->Report("1.1", craft::v1::FLIPPED);
  }
  std::optional<AgentMessage> committed = planner_.NextAnswer();
  ASSERT_TRUE(committed.has_value());
  ASSERT_TRUE(committed->has_ack()) << committed->ShortDebugString();
  EXPECT_EQ(committed->ack().nonce(), "n2");
  EXPECT_EQ(committed->ack().phase(), craft::v1::COMMITTED);

  // The planner drops the stream: the agent comes back with what it serves.
  planner_.EndStream(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner restarting"));
  ASSERT_TRUE(planner_.WaitForStreams(2));
  std::optional<AgentMessage> hello = planner_.NextAnswer();
  ASSERT_TRUE(hello.has_value());
  ASSERT_TRUE(hello->has_hello()) << hello->ShortDebugString();
  EXPECT_EQ(hello->hello().committed_version(), "1.1");
  EXPECT_EQ(hello->hello().highest_epoch(), 1);

  // A stale planner is fenced over the wire too.
  planner_.Push(Commit(0, "old", "0.9"));
  std::optional<AgentMessage> stale = planner_.NextAnswer();
  ASSERT_TRUE(stale.has_value());
  ASSERT_TRUE(stale->has_nack());
  EXPECT_EQ(stale->nack().error().code(), craft::v1::STALE_EPOCH);
  EXPECT_EQ(stale->nack().last_good_version(), "1.1");
}

TEST_F(AgentGrpcTest, BadWorkerInputEndsOnlyThatStream) {
  FakeWorker w0(channel_), w1(channel_);
  AttachAndConnect(w0, w1);

  {  // Not a hello first.
    FakeWorker bad(channel_);
    WorkerMessage window;
    window.mutable_window()->set_gpu(0);
    bad.Send(window);
    EXPECT_EQ(bad.Ended().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // A GPU of another node.
    FakeWorker bad(channel_);
    WorkerMessage hello;
    *hello.mutable_hello() = Hello(5);
    bad.Send(hello);
    grpc::Status status = bad.Ended();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("gpu 5"), std::string::npos) << status.error_message();
  }
  {  // A GPU already attached.
    FakeWorker bad(channel_);
    EXPECT_FALSE(bad.Attach(Hello(0)));
    EXPECT_EQ(bad.Ended().error_code(), grpc::StatusCode::ALREADY_EXISTS);
  }
  {  // An empty message.
    FakeWorker bad(channel_);
    bad.Send(WorkerMessage());
    EXPECT_EQ(bad.Ended().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // Bytes that are not a WorkerMessage at all.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> raw(
        grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
            channel_.get(),
            grpc::internal::RpcMethod("/craft.v1.NodeAgent/Attach",
                                      grpc::internal::RpcMethod::BIDI_STREAMING),
            &context));
    const char garbage[] = "\xff\xff\xff\xff\x0f garbage";
    grpc::Slice slice(garbage, sizeof(garbage));
    grpc::ByteBuffer buffer(&slice, 1);
    raw->Write(buffer);
    grpc::ByteBuffer reply;
    while (raw->Read(&reply)) {
    }
    EXPECT_EQ(raw->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  // The good workers are still attached and served.
  EXPECT_TRUE(agent_->node()->AllWorkersAttached());
  w0.Window(0, 7);
  w1.Window(1, 7);
  std::optional<AgentMessage> load = planner_.Next();
  ASSERT_TRUE(load.has_value());
  ASSERT_TRUE(load->has_load()) << load->ShortDebugString();
  EXPECT_EQ(load->load().gpus(0).window_id(), 7);
}

WorkerMessage HelloMessage(const craft::v1::WorkerHello& hello) {
  WorkerMessage message;
  *message.mutable_hello() = hello;
  return message;
}

craft::v1::WorkerHello HelloWithGroup(int gpu, const std::string& id) {
  craft::v1::WorkerHello hello = Hello(gpu);
  hello.set_transfer_group_id(id);
  return hello;
}

TEST_F(AgentGrpcTest, ASecondHelloReannouncesANewTransferGroupId) {
  FakeWorker w0(channel_), w1(channel_);
  const std::string first(kTransferGroupIdBytes, 'x'), second(kTransferGroupIdBytes, 'y');
  AttachAndConnect(w0, w1, HelloWithGroup(0, first));

  // Rank 0 made a new id (its communicator was aborted) and says so on its
  // open stream: the agent re-announces the node on a new planner stream.
  ASSERT_TRUE(w0.Send(HelloMessage(HelloWithGroup(0, second))));
  ASSERT_TRUE(planner_.WaitForStreams(2));
  std::optional<AgentMessage> hello = planner_.NextAnswer();
  ASSERT_TRUE(hello.has_value());
  ASSERT_TRUE(hello->has_hello()) << hello->ShortDebugString();
  EXPECT_EQ(hello->hello().gpus(0).transfer_group_id(), second);
  EXPECT_EQ(hello->hello().gpus(1).transfer_group_id(), "");

  // The worker stayed attached: its windows still flow.
  w0.Window(0, 3);
  w1.Window(1, 3);
  std::optional<AgentMessage> load = planner_.Next();
  ASSERT_TRUE(load.has_value());
  ASSERT_TRUE(load->has_load()) << load->ShortDebugString();
  EXPECT_EQ(load->load().gpus_size(), 2);
  EXPECT_TRUE(agent_->node()->AllWorkersAttached());

  // A hello for another GPU on the stream ends it.
  ASSERT_TRUE(w1.Send(HelloMessage(Hello(0))));
  grpc::Status status = w1.Ended();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("on the stream of gpu 1"), std::string::npos)
      << status.error_message();
}

TEST_F(AgentGrpcTest, AMalformedTransferGroupIdEndsOnlyThatStream) {
  {  // In the first hello: refused.
    FakeWorker bad(channel_);
    EXPECT_FALSE(bad.Attach(HelloWithGroup(0, "12345")));
    grpc::Status status = bad.Ended();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("transfer_group_id has 5 bytes"), std::string::npos)
        << status.error_message();
  }
  FakeWorker w0(channel_), w1(channel_);
  AttachAndConnect(w0, w1);
  // In an update: that stream ends; nothing is re-announced.
  ASSERT_TRUE(w0.Send(HelloMessage(HelloWithGroup(0, "12345"))));
  grpc::Status status = w0.Ended();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("transfer_group_id has 5 bytes"), std::string::npos)
      << status.error_message();
  // The agent keeps serving: the other worker's windows reach the planner on
  // the same planner stream, and GPU 0 can attach again.
  w1.Window(1, 4);
  std::optional<AgentMessage> load = planner_.Next();
  ASSERT_TRUE(load.has_value());
  ASSERT_TRUE(load->has_load()) << load->ShortDebugString();
  FakeWorker again(channel_);
  EXPECT_TRUE(again.Attach(HelloWithGroup(0, std::string(kTransferGroupIdBytes, 'x'))));
}

TEST_F(AgentGrpcTest, WorkerVanishingMidPrepareIsNackedAndCanReattach) {
  FakeWorker w0(channel_), w1(channel_);
  AttachAndConnect(w0, w1);
  planner_.Push(Prepare(1, "n1", "1.1"));
  ASSERT_TRUE(w0.Read().has_value());
  ASSERT_TRUE(w1.Read().has_value());
  w0.Report("1.1", craft::v1::READY);
  w1.Vanish();
  std::optional<AgentMessage> nack = planner_.NextAnswer();
  ASSERT_TRUE(nack.has_value());
  ASSERT_TRUE(nack->has_nack()) << nack->ShortDebugString();
  EXPECT_EQ(nack->nack().nonce(), "n1");
  EXPECT_EQ(nack->nack().error().code(), craft::v1::WORKER_MISSING);
  EXPECT_EQ(nack->nack().last_good_version(), "0.0");
  // The survivor is told to drop its staging.
  std::optional<WorkerCommand> abort = w0.Read();
  ASSERT_TRUE(abort.has_value());
  EXPECT_EQ(abort->abort().version(), "1.1");
  // The GPU's worker comes back on a new stream.
  FakeWorker again(channel_);
  EXPECT_TRUE(again.Attach(Hello(1)));
}

TEST_F(AgentGrpcTest, ShutdownEndsWorkerStreamsAndRemovesTheSocket) {
  FakeWorker w0(channel_), w1(channel_);
  AttachAndConnect(w0, w1);
  agent_->Shutdown();
  EXPECT_EQ(w0.Ended().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(w1.Ended().error_code(), grpc::StatusCode::UNAVAILABLE);
  struct stat info;
  EXPECT_NE(::stat(agent_->socket_path().c_str(), &info), 0);
  EXPECT_TRUE(planner_.WaitForNoStream()) << "the planner stream is closed";
}

// ---------------------------------------------------------------- the socket

TEST_F(AgentGrpcTest, TheSocketHasItsModeAndAdmitsTheAllowedUser) {
  struct stat info;
  ASSERT_EQ(::stat(agent_->socket_path().c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0660u) << "the default --socket_mode";
  // This process runs as the agent's own user: the default allowed uid.
  FakeWorker w0(channel_);
  EXPECT_TRUE(w0.Attach(Hello(0)));
  EXPECT_GE(agent_->listener()->stats().accepted, 1);
  EXPECT_EQ(agent_->listener()->stats().refused, 0);
}

TEST_F(AgentGrpcTest, AWorkerWhoseCredentialsDoNotMatchIsRefused) {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Agent> strict = StartAnother(
      "strict.sock",
      [](AgentOptions& options) {
        options.socket_mode = 0666;  // only the credential check stands in the way
        options.socket_peers = PeerPolicy{/*uid=*/12345, /*gid=*/12345};
      },
      &channel);
  ASSERT_NE(strict, nullptr);
  struct stat info;
  ASSERT_EQ(::stat(strict->socket_path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0666u);
  FakeWorker refused(channel);
  EXPECT_FALSE(refused.Attach(Hello(0)));
  EXPECT_EQ(refused.Ended().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_GE(strict->listener()->stats().refused, 1);
  EXPECT_EQ(strict->listener()->stats().accepted, 0);
  EXPECT_FALSE(strict->node()->AllWorkersAttached());
  EXPECT_TRUE(strict->node()->stats().attached_gpus.empty());
}

TEST_F(AgentGrpcTest, WithoutModelFlagsWorkersAttachOnceTheWelcomeStatesTheModel) {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Agent> open = StartAnother(
      "open.sock", [](AgentOptions& options) { options.node.model_check = {}; }, &channel);
  ASSERT_NE(open, nullptr);
  {  // Before the planner spoke: retry later.
    FakeWorker early(channel);
    EXPECT_FALSE(early.Attach(Hello(0)));
    grpc::Status status = early.Ended();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(status.error_message().find("model shape"), std::string::npos)
        << status.error_message();
  }
  open->ConnectPlanner();
  std::optional<AgentMessage> hello = planner_.Next();
  ASSERT_TRUE(hello.has_value());
  ASSERT_TRUE(hello->has_hello()) << hello->ShortDebugString();
  EXPECT_FALSE(hello->hello().has_model()) << "it has none of its own to state";
  PlannerMessage welcome;
  welcome.set_epoch(1);
  welcome.set_nonce("w");
  craft::v1::ModelShape* model = welcome.mutable_welcome()->mutable_model();
  model->set_num_layers(2);
  model->set_num_experts(4);
  model->set_top_k(2);
  planner_.Push(welcome);
  // The Welcome is handled on the link's thread: the worker retries, as the
  // real one does with its backoff.
  std::unique_ptr<FakeWorker> worker;
  const absl::Time deadline = absl::Now() + kWait;
  do {
    worker = std::make_unique<FakeWorker>(channel);
  } while (!worker->Attach(Hello(0)) && absl::Now() < deadline);
  EXPECT_TRUE(open->node()->model().has_value());
  EXPECT_EQ(open->node()->stats().attached_gpus, std::vector<int>{0});
  // One declaring another shape is refused as such now.
  craft::v1::WorkerHello wrong = Hello(1);
  wrong.mutable_model()->set_num_layers(13);
  FakeWorker impostor(channel);
  EXPECT_FALSE(impostor.Attach(wrong));
  EXPECT_EQ(impostor.Ended().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace craft::agent
