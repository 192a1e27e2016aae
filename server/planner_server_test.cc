// The planner as a real in-process gRPC server on 127.0.0.1:0, driven by test
// clients over the wire: a whole prepare/commit, bad input that ends one
// stream (or one window) while the server keeps serving, admin auth, health
// and the drain on shutdown.
#include "server/planner_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/empty_call.h"
#include "common/test_certs.h"
#include "common/transport_security.h"
#include "craft/v1/agent.grpc.pb.h"
#include "craft/v1/placement.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "server/internal/test_support.h"
#include "server/state_store.h"
#include "wire/layout_delta.h"

namespace craft::server {
namespace {

using ::testing::HasSubstr;
using testing::Hello;
using testing::SkewedLoads;
using testing::SmallConfig;
using ::testing::StartsWith;

TransportSecurity Insecure() {
  TransportSecurity security;
  security.insecure = true;
  return security;
}

void SetDeadline(grpc::ClientContext* context, int seconds = 10) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// One agent's side of AgentGateway.Connect, with blocking reads.
class AgentClient {
 public:
  explicit AgentClient(const std::shared_ptr<grpc::Channel>& channel)
      : stub_(craft::v1::AgentGateway::NewStub(channel)) {
    SetDeadline(&context_, 30);
    stream_ = stub_->Connect(&context_);
  }

  bool Send(const craft::v1::AgentMessage& message) { return stream_->Write(message); }
  bool SendHello(const craft::v1::AgentHello& hello) {
    craft::v1::AgentMessage message;
    *message.mutable_hello() = hello;
    return Send(message);
  }
  bool SendLoad(const craft::v1::NodeLoad& load) {
    craft::v1::AgentMessage message;
    *message.mutable_load() = load;
    return Send(message);
  }
  bool SendAck(const craft::v1::PlannerMessage& answered, craft::v1::AckPhase phase) {
    craft::v1::AgentMessage message;
    *message.mutable_ack() = testing::AckOf(answered, phase);
    return Send(message);
  }
  // The next message other than a Welcome (which only carries the epoch).
  std::optional<craft::v1::PlannerMessage> Read() {
    craft::v1::PlannerMessage message;
    do {
      if (!stream_->Read(&message)) return std::nullopt;
    } while (message.has_welcome());
    return message;
  }
  // Reads until the server ends the stream and returns its status.
  grpc::Status Finish() {
    craft::v1::PlannerMessage ignored;
    while (stream_->Read(&ignored)) {
    }
    return stream_->Finish();
  }
  void Cancel() { context_.TryCancel(); }

 private:
  std::unique_ptr<craft::v1::AgentGateway::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<craft::v1::AgentMessage, craft::v1::PlannerMessage>>
      stream_;
};

// Counts the NodeLoads the gateway reports as handled.
class LoadCountingObserver : public PlannerObserver {
 public:
  void OnReplan(const std::string&, const ReplanOutcome&) override {}
  void OnApplyFinished(const std::string&, const ApplyRecord&) override {}
  void OnAgentLoadHandled(absl::Duration) override { ++loads_handled; }
  std::atomic<int> loads_handled{0};
};

class PlannerServerTest : public ::testing::Test {
 protected:
  void StartServer(const PlannerConfig& config = SmallConfig(),
                   int max_receive_message_bytes = 64 << 20) {
    ServerOptions options;
    options.security = security_;
    options.clock = &clock_;  // the loop only re-plans when told to
    // One injected store serves one group; groups keep files at state_path.
    if (config.groups.empty()) options.state_store = &store_;
    options.max_receive_message_bytes = max_receive_message_bytes;
    options.shutdown_grace = absl::Seconds(2);
    options.observer = &observer_;
    absl::StatusOr<std::unique_ptr<PlannerServer>> server = PlannerServer::Start(config, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    placement_ = craft::v1::PlacementService::NewStub(channel_);
  }

  // A channel to the server as the certificate `name` (TLS tests).
  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& name) {
    return MakeChannel(absl::StrCat("127.0.0.1:", server_->port()), certs_->For(name),
                       "craft-planner");
  }

  // Plaintext by default; UseTls() before StartServer for mutual TLS.
  void UseTls() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    absl::StatusOr<craft::testing::TestCerts> certs =
        craft::testing::MakeTestCerts(absl::StrCat(tmp ? tmp : "/tmp", "/planner_certs"),
                                      {"craft-planner:127.0.0.1", "a", "b", "ops", "engine"});
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
    security_ = certs_->For("craft-planner");
  }

  // GPUs `gpus` report window `id` of SkewedLoads() under the initial layout.
  static craft::v1::NodeLoad Load(const std::vector<int>& gpus, int64_t id) {
    static const planner::Layout initial = *planner::ContiguousLayout(2, 4, {4, 2});
    craft::v1::NodeLoad load;
    for (int gpu : gpus) *load.add_gpus() = testing::Window(initial, "0.0", gpu, id, SkewedLoads());
    return load;
  }

  // Connects nodes a (GPUs 0, 1) and b (GPUs 2, 3) and streams 4 windows each.
  void ConnectAndReport(AgentClient& a, AgentClient& b) {
    ASSERT_TRUE(a.SendHello(Hello("a", {0, 1})));
    ASSERT_TRUE(b.SendHello(Hello("b", {2, 3})));
    for (int id = 0; id < 4; ++id) {
      ASSERT_TRUE(a.SendLoad(Load({0, 1}, id)));
      ASSERT_TRUE(b.SendLoad(Load({2, 3}, id)));
    }
    ASSERT_TRUE(Eventually([&] { return server_->load_store()->windows_ingested() == 16; }));
  }

  template <typename Predicate>
  static bool Eventually(Predicate done) {
    for (int i = 0; i < 5000 && !done(); ++i) absl::SleepFor(absl::Milliseconds(1));
    return done();
  }

  craft::v1::LayoutStatus GetLayout() {
    grpc::ClientContext context;
    SetDeadline(&context);
    craft::v1::LayoutStatus status;
    EXPECT_TRUE(placement_->GetLayout(&context, {}, &status).ok());
    return status;
  }

  grpc::Status Replan(bool force, craft::v1::ReplanResponse* response,
                      const std::string& authorization = "") {
    grpc::ClientContext context;
    SetDeadline(&context);
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    craft::v1::ReplanRequest request;
    request.set_force(force);
    return placement_->Replan(&context, request, response);
  }

  TransportSecurity security_ = Insecure();
  std::optional<craft::testing::TestCerts> certs_;
  FakeClock clock_;
  InMemoryStateStore store_;
  LoadCountingObserver observer_;
  std::unique_ptr<PlannerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<craft::v1::PlacementService::Stub> placement_;
};

TEST_F(PlannerServerTest, WholePrepareAndCommitOverTheWire) {
  StartServer();
  // An operator watches the layout from the start.
  grpc::ClientContext watch_context;
  SetDeadline(&watch_context, 30);
  auto watch = placement_->WatchLayout(&watch_context, {});
  craft::v1::LayoutStatus watched;
  ASSERT_TRUE(watch->Read(&watched));
  EXPECT_EQ(watched.committed().version(), "0.0");

  AgentClient a(channel_), b(channel_);
  ConnectAndReport(a, b);

  craft::v1::ReplanResponse replan;
  ASSERT_TRUE(Replan(/*force=*/false, &replan).ok());
  EXPECT_THAT(replan.decision(), StartsWith("pushing"));
  EXPECT_EQ(replan.version(), "1.1");
  EXPECT_EQ(GetLayout().pending_version(), "1.1");

  std::optional<craft::v1::PlannerMessage> prepare_a = a.Read();
  std::optional<craft::v1::PlannerMessage> prepare_b = b.Read();
  ASSERT_TRUE(prepare_a.has_value() && prepare_a->has_prepare());
  ASSERT_TRUE(prepare_b.has_value() && prepare_b->has_prepare());
  EXPECT_EQ(prepare_a->epoch(), 1);
  EXPECT_EQ(PrepareVersion(prepare_a->prepare()), "1.1");
  for (const craft::v1::Transfer& transfer : prepare_b->prepare().transfers()) {
    EXPECT_EQ(prepare_b->prepare().gpu_endpoints().at(transfer.src_gpu()),
              "127.0.0.1:" + std::to_string(20000 + transfer.src_gpu()));
  }

  ASSERT_TRUE(a.SendAck(*prepare_a, craft::v1::PREPARED));
  ASSERT_TRUE(b.SendAck(*prepare_b, craft::v1::PREPARED));
  std::optional<craft::v1::PlannerMessage> commit_a = a.Read();
  std::optional<craft::v1::PlannerMessage> commit_b = b.Read();
  ASSERT_TRUE(commit_a.has_value() && commit_a->has_commit());
  ASSERT_TRUE(commit_b.has_value() && commit_b->has_commit());
  EXPECT_EQ(commit_a->commit().version(), "1.1");
  EXPECT_NE(commit_a->nonce(), prepare_a->nonce());
  ASSERT_TRUE(a.SendAck(*commit_a, craft::v1::COMMITTED));
  ASSERT_TRUE(b.SendAck(*commit_b, craft::v1::COMMITTED));
  ASSERT_TRUE(Eventually([&] { return !server_->coordinator()->apply_in_progress(); }));

  const craft::v1::LayoutStatus status = GetLayout();
  EXPECT_EQ(status.committed().version(), "1.1");
  EXPECT_EQ(status.pending_version(), "");
  EXPECT_EQ(status.epoch(), 1);
  EXPECT_EQ(status.windows_ingested(), 16);
  EXPECT_NEAR(status.measured_balancedness(), 0.0, 1e-12) << "no window under 1.1 yet";
  EXPECT_EQ((*store_.Load())->committed.version(), "1.1");

  ASSERT_TRUE(watch->Read(&watched));
  EXPECT_EQ(watched.committed().version(), "1.1");

  grpc::ClientContext list_context;
  SetDeadline(&list_context);
  craft::v1::ListAgentsResponse agents;
  ASSERT_TRUE(placement_->ListAgents(&list_context, {}, &agents).ok());
  ASSERT_EQ(agents.agents_size(), 2);
  for (const craft::v1::AgentInfo& agent : agents.agents()) {
    EXPECT_TRUE(agent.connected());
    EXPECT_EQ(agent.committed_version(), "1.1");
  }

  grpc::ClientContext explain_context;
  SetDeadline(&explain_context);
  craft::v1::ExplainResponse explain;
  ASSERT_TRUE(placement_->Explain(&explain_context, {}, &explain).ok());
  EXPECT_EQ(explain.version(), "1.1");
  EXPECT_EQ(explain.layers_size(), 2);
  EXPECT_THAT(explain.decision(), StartsWith("pushing"));
  watch_context.TryCancel();
}

TEST_F(PlannerServerTest, AgentDisconnectingDuringPrepareAbortsForEveryone) {
  StartServer();
  AgentClient a(channel_), b(channel_);
  ConnectAndReport(a, b);
  craft::v1::ReplanResponse replan;
  ASSERT_TRUE(Replan(/*force=*/true, &replan).ok());
  ASSERT_TRUE(a.Read().has_value());
  ASSERT_TRUE(b.Read().has_value());
  b.Cancel();
  std::optional<craft::v1::PlannerMessage> abort = a.Read();
  ASSERT_TRUE(abort.has_value() && abort->has_abort());
  EXPECT_EQ(abort->abort().version(), "1.1");
  EXPECT_THAT(abort->abort().reason(), HasSubstr("node b disconnected"));
  EXPECT_EQ(GetLayout().committed().version(), "0.0");
}

TEST_F(PlannerServerTest, FirstMessageMustBeHello) {
  StartServer();
  AgentClient agent(channel_);
  ASSERT_TRUE(agent.SendLoad(Load({0}, 1)));
  const grpc::Status status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("first message"));
  EXPECT_EQ(GetLayout().committed().version(), "0.0");  // still serving
}

TEST_F(PlannerServerTest, WrongModelShapeEndsTheStream) {
  StartServer();
  AgentClient agent(channel_);
  craft::v1::AgentHello hello = Hello("a", {0, 1});
  hello.mutable_model()->set_num_experts(5);
  ASSERT_TRUE(agent.SendHello(hello));
  const grpc::Status status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("model shape mismatch"));
  // The next agent is welcome.
  AgentClient good(channel_);
  ASSERT_TRUE(good.SendHello(Hello("a", {0, 1})));
  ASSERT_TRUE(Eventually([&] { return server_->coordinator()->Agents().size() == 1; }));
}

TEST_F(PlannerServerTest, MalformedWindowsAreDroppedAndTheStreamContinues) {
  StartServer();
  AgentClient agent(channel_);
  ASSERT_TRUE(agent.SendHello(Hello("a", {0, 1})));
  craft::v1::NodeLoad bad = Load({0, 1}, 1);
  bad.mutable_gpus(0)->mutable_layers(0)->set_counts(0, -5);  // negative
  bad.mutable_gpus(1)->mutable_layers(1)->add_counts(1);      // wrong slot count
  ASSERT_TRUE(agent.SendLoad(bad));
  craft::v1::NodeLoad foreign = Load({2}, 1);  // not this node's GPU
  foreign.mutable_gpus(0)->set_layout_version("5.5");
  ASSERT_TRUE(agent.SendLoad(foreign));
  ASSERT_TRUE(agent.SendLoad(Load({0, 1}, 2)));
  LoadStore* store = server_->load_store();
  ASSERT_TRUE(Eventually([&] { return store->windows_ingested() == 2; }));
  EXPECT_EQ(store->rejected(RejectReason::kNegativeCount), 1);
  EXPECT_EQ(store->rejected(RejectReason::kWrongSlotCount), 1);
  EXPECT_EQ(store->rejected(RejectReason::kGpuNotOnNode), 1);
  EXPECT_EQ(server_->coordinator()->Agents().at(0).connected, true);
  // Every NodeLoad is timed, also one whose windows were all rejected.
  EXPECT_TRUE(Eventually([&] { return observer_.loads_handled == 3; }));
}

TEST_F(PlannerServerTest, OversizedMessageIsRefusedAndTheServerKeepsServing) {
  StartServer(SmallConfig(), /*max_receive_message_bytes=*/1 << 20);
  AgentClient agent(channel_);
  ASSERT_TRUE(agent.SendHello(Hello("a", {0, 1})));
  craft::v1::NodeLoad huge = Load({0}, 1);
  for (int i = 0; i < 300'000; ++i) {
    huge.mutable_gpus(0)->mutable_layers(0)->add_counts(int64_t{1} << 39);
  }
  agent.SendLoad(huge);  // may or may not report the failure itself
  EXPECT_EQ(agent.Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(GetLayout().committed().version(), "0.0");
  AgentClient next(channel_);
  ASSERT_TRUE(next.SendHello(Hello("a", {0, 1})));
  ASSERT_TRUE(next.SendLoad(Load({0, 1}, 1)));
  ASSERT_TRUE(Eventually([&] { return server_->load_store()->windows_ingested() == 2; }));
}

TEST_F(PlannerServerTest, ANewStreamOfANodeReplacesTheOldOne) {
  StartServer();
  AgentClient first(channel_);
  ASSERT_TRUE(first.SendHello(Hello("a", {0, 1})));
  ASSERT_TRUE(Eventually([&] { return server_->coordinator()->Agents().size() == 1; }));
  AgentClient second(channel_);
  ASSERT_TRUE(second.SendHello(Hello("a", {0, 1})));
  EXPECT_EQ(first.Finish().error_code(), grpc::StatusCode::ABORTED);
  ASSERT_TRUE(second.SendLoad(Load({0, 1}, 1)));
  ASSERT_TRUE(Eventually([&] { return server_->load_store()->windows_ingested() == 2; }));
  EXPECT_TRUE(server_->coordinator()->Agents().at(0).connected);
}

TEST_F(PlannerServerTest, ADryRunFloodNeitherQueuesNorDelaysAReplan) {
  PlannerConfig config = SmallConfig();
  config.max_plan_work = int64_t{1} << 40;  // let two slow dry runs through
  StartServer(config);
  // Seconds of planning each: 1 layer x 60,000 experts on 256 GPUs.
  craft::v1::PlanRequest slow;
  slow.add_layers()->mutable_counts()->Resize(60'000, 5);
  slow.mutable_layers(0)->set_counts(7, 900'000);
  slow.set_num_gpus(256);
  slow.set_num_nodes(32);
  slow.set_budget(-1);
  std::atomic<int64_t> plans_done_at_ms{0};
  std::vector<std::thread> plans;
  for (int i = 0; i < 2; ++i) {
    plans.emplace_back([&] {
      grpc::ClientContext context;
      craft::v1::PlanResponse response;
      EXPECT_TRUE(placement_->Plan(&context, slow, &response).ok());
      plans_done_at_ms = absl::ToUnixMillis(absl::Now());
    });
  }
  absl::SleepFor(absl::Milliseconds(300));  // both are planning now
  // A third finds both dry-run threads busy: refused at once, not queued.
  grpc::ClientContext third_context;
  craft::v1::PlanResponse third;
  const grpc::Status refused = placement_->Plan(&third_context, slow, &third);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  // A Replan runs on the loop, not behind the dry runs.
  craft::v1::ReplanResponse replan;
  ASSERT_TRUE(Replan(/*force=*/false, &replan).ok());
  const int64_t replanned_at_ms = absl::ToUnixMillis(absl::Now());
  for (std::thread& plan : plans) plan.join();
  EXPECT_EQ(plans_done_at_ms.load() == 0, false);
  EXPECT_LT(replanned_at_ms, plans_done_at_ms.load()) << "the Replan waited for the dry runs";
  // And a dry run beyond the work limit is refused before it plans.
  StartServer(SmallConfig());
  grpc::ClientContext huge_context;
  const grpc::Status too_big = placement_->Plan(&huge_context, slow, &third);
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(too_big.error_message().find("limits.max_plan_work"), std::string::npos);
}

TEST_F(PlannerServerTest, ReplanChecksTheBearerToken) {
  PlannerConfig config = SmallConfig();
  const char* tmp = std::getenv("TEST_TMPDIR");
  config.security.admin_token_file = absl::StrCat(tmp ? tmp : "/tmp", "/admin-token");
  std::ofstream(config.security.admin_token_file) << "t0ken\n";  // `echo t0ken > file`
  StartServer(config);
  craft::v1::ReplanResponse response;
  EXPECT_EQ(Replan(false, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Replan(false, &response, "Bearer nope").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Replan(false, &response, "t0ken").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(Replan(false, &response, "Bearer t0ken").ok());
  EXPECT_THAT(response.decision(), HasSubstr("have no connected agent"));
}

TEST_F(PlannerServerTest, MutualTlsProvesNodesAndRoles) {
  UseTls();
  PlannerConfig config = SmallConfig();  // 4 GPUs on 2 nodes
  config.security.nodes = {"a", "b"};
  config.security.admins = {"ops"};
  StartServer(config);

  // An agent's certificate proves its node, and the node owns its GPUs.
  {
    AgentClient a(ChannelAs("a"));
    ASSERT_TRUE(a.SendHello(Hello("a", {0, 1})));
    AgentClient b_as_a(ChannelAs("b"));
    ASSERT_TRUE(b_as_a.SendHello(Hello("a", {0, 1})));
    grpc::Status status = b_as_a.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(status.error_message(), HasSubstr("certificate must carry its node's name"));
    AgentClient b_squatting(ChannelAs("b"));
    ASSERT_TRUE(b_squatting.SendHello(Hello("b", {0, 1})));
    status = b_squatting.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(status.error_message(), HasSubstr("not one of its ranks [2, 4)"));
    AgentClient stranger(ChannelAs("engine"));
    ASSERT_TRUE(stranger.SendHello(Hello("engine", {2, 3})));
    EXPECT_EQ(stranger.Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
    a.Cancel();
  }
  // Roles: any certificate of the CA reads, only admins replan; plaintext
  // gets nowhere.
  auto engine = craft::v1::PlacementService::NewStub(ChannelAs("engine"));
  craft::v1::LayoutStatus layout;
  grpc::ClientContext read_context;
  SetDeadline(&read_context);
  EXPECT_TRUE(engine->GetLayout(&read_context, {}, &layout).ok());
  craft::v1::ReplanResponse response;
  grpc::ClientContext engine_replan;
  SetDeadline(&engine_replan);
  grpc::Status denied = engine->Replan(&engine_replan, {}, &response);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("'engine' does not have"));
  auto ops = craft::v1::PlacementService::NewStub(ChannelAs("ops"));
  grpc::ClientContext ops_replan;
  SetDeadline(&ops_replan);
  EXPECT_TRUE(ops->Replan(&ops_replan, {}, &response).ok());
  grpc::ClientContext plaintext;
  SetDeadline(&plaintext, 3);
  EXPECT_EQ(placement_->GetLayout(&plaintext, {}, &layout).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(PlannerServerTest, AHugeNodeNameIsRefusedWithoutBeingQuoted) {
  StartServer();
  AgentClient agent(channel_);
  ASSERT_TRUE(agent.SendHello(Hello(std::string(1 << 20, 'n'), {0, 1})));
  const grpc::Status status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), 300u) << "the status quotes the name";
}

TEST_F(PlannerServerTest, TlsNeedsTheNodeList) {
  UseTls();
  ServerOptions options;
  options.security = security_;
  options.state_store = &store_;
  absl::StatusOr<std::unique_ptr<PlannerServer>> server =
      PlannerServer::Start(SmallConfig(), options);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("security.nodes is required"));
}

TEST_F(PlannerServerTest, DryRunPlanAnswersOverTheWire) {
  StartServer();
  grpc::ClientContext context;
  SetDeadline(&context);
  craft::v1::PlanRequest request;
  for (const std::vector<int64_t>& layer : SkewedLoads()) {
    request.add_layers()->mutable_counts()->Add(layer.begin(), layer.end());
  }
  request.set_budget(-1);
  craft::v1::PlanResponse response;
  ASSERT_TRUE(placement_->Plan(&context, request, &response).ok());
  EXPECT_EQ(response.layout().layers_size(), 2);
  grpc::ClientContext bad_context;
  SetDeadline(&bad_context);
  EXPECT_EQ(placement_->Plan(&bad_context, {}, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(PlannerServerTest, HealthIsServing) {
  StartServer();
  // An empty HealthCheckRequest: the whole server.
  const EmptyCallReply reply =
      CallWithEmptyRequest(channel_, kHealthCheckMethod, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
  EXPECT_EQ(reply.bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST_F(PlannerServerTest, ShutdownDrainsEveryStream) {
  StartServer();
  AgentClient agent(channel_);
  ASSERT_TRUE(agent.SendHello(Hello("a", {0, 1})));
  ASSERT_TRUE(Eventually([&] { return server_->coordinator()->Agents().size() == 1; }));
  grpc::ClientContext watch_context;
  SetDeadline(&watch_context, 30);
  auto watch = placement_->WatchLayout(&watch_context, {});
  craft::v1::LayoutStatus watched;
  ASSERT_TRUE(watch->Read(&watched));

  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "streams should end before the grace";
  const grpc::Status status = agent.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "planner draining");
  while (watch->Read(&watched)) {
  }
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(PlannerServerTest, RestartedPlannerKeepsTheCommittedVersion) {
  StartServer();
  {
    AgentClient a(channel_), b(channel_);
    ConnectAndReport(a, b);
    craft::v1::ReplanResponse replan;
    ASSERT_TRUE(Replan(/*force=*/true, &replan).ok());
    std::optional<craft::v1::PlannerMessage> prepare_a = a.Read(), prepare_b = b.Read();
    ASSERT_TRUE(prepare_a.has_value() && prepare_b.has_value());
    ASSERT_TRUE(a.SendAck(*prepare_a, craft::v1::PREPARED));
    ASSERT_TRUE(b.SendAck(*prepare_b, craft::v1::PREPARED));
    ASSERT_TRUE(Eventually([&] { return GetLayout().committed().version() == "1.1"; }));
    server_->Shutdown();
  }
  server_.reset();
  StartServer();
  const craft::v1::LayoutStatus status = GetLayout();
  EXPECT_EQ(status.committed().version(), "1.1");
  EXPECT_EQ(status.epoch(), 2);
}

// Two placement groups (a prefill and a decode pool) on one planner: each
// agent joins its own group, each group applies on its own, and a fault in
// one group's apply leaves the other applying.
TEST_F(PlannerServerTest, PlacementGroupsApplyIndependently) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  PlannerConfig config = SmallConfig();
  config.state_path = absl::StrCat(tmp ? tmp : "/tmp", "/groups.state");
  for (const char* name : {"prefill", "decode"}) {
    PlacementGroup group{name, "", SmallConfig()};
    config.groups.push_back(group);
  }
  StartServer(config);
  auto group_of = [&](const std::string& name) { return *server_->groups().Find(name); };
  auto hello = [](const std::string& node, std::vector<int> gpus, const std::string& group) {
    craft::v1::AgentHello message = Hello(node, gpus);
    message.set_group(group);
    return message;
  };

  // A hello must name a group this planner serves.
  {
    AgentClient unnamed(channel_);
    ASSERT_TRUE(unnamed.SendHello(Hello("x", {0, 1})));
    const grpc::Status status = unnamed.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr("2 placement groups; name one (prefill, decode)"));
    AgentClient unknown(channel_);
    ASSERT_TRUE(unknown.SendHello(hello("x", {0, 1}, "embed")));
    EXPECT_EQ(unknown.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }

  AgentClient pa(channel_), pb(channel_), da(channel_), db(channel_);
  ASSERT_TRUE(pa.SendHello(hello("pa", {0, 1}, "prefill")));
  ASSERT_TRUE(pb.SendHello(hello("pb", {2, 3}, "prefill")));
  ASSERT_TRUE(da.SendHello(hello("da", {0, 1}, "decode")));
  ASSERT_TRUE(db.SendHello(hello("db", {2, 3}, "decode")));
  for (int id = 0; id < 4; ++id) {
    ASSERT_TRUE(pa.SendLoad(Load({0, 1}, id)));
    ASSERT_TRUE(pb.SendLoad(Load({2, 3}, id)));
    ASSERT_TRUE(da.SendLoad(Load({0, 1}, id)));
    ASSERT_TRUE(db.SendLoad(Load({2, 3}, id)));
  }
  ASSERT_TRUE(Eventually([&] {
    return group_of("prefill")->load_store->windows_ingested() == 16 &&
           group_of("decode")->load_store->windows_ingested() == 16;
  }));

  auto replan = [&](const std::string& group) {
    grpc::ClientContext context;
    SetDeadline(&context);
    craft::v1::ReplanRequest request;
    request.set_force(true);
    request.set_group(group);
    craft::v1::ReplanResponse response;
    const grpc::Status status = placement_->Replan(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.version();
  };
  auto layout = [&](const std::string& group) {
    grpc::ClientContext context;
    SetDeadline(&context);
    craft::v1::GetLayoutRequest request;
    request.set_group(group);
    craft::v1::LayoutStatus status;
    EXPECT_TRUE(placement_->GetLayout(&context, request, &status).ok());
    return status;
  };

  // Both groups prepare at once; the decode group's apply fails (an agent
  // leaves mid-prepare), the prefill group's commits.
  EXPECT_EQ(replan("prefill"), "1.1");
  EXPECT_EQ(replan("decode"), "1.1");
  std::optional<craft::v1::PlannerMessage> prepare_pa = pa.Read();
  std::optional<craft::v1::PlannerMessage> prepare_pb = pb.Read();
  std::optional<craft::v1::PlannerMessage> prepare_da = da.Read();
  ASSERT_TRUE(prepare_pa && prepare_pa->has_prepare() && prepare_pb && prepare_pb->has_prepare());
  ASSERT_TRUE(prepare_da && prepare_da->has_prepare());
  db.Cancel();
  ASSERT_TRUE(Eventually([&] { return !group_of("decode")->coordinator->apply_in_progress(); }));
  EXPECT_EQ(layout("decode").committed().version(), "0.0");

  ASSERT_TRUE(pa.SendAck(*prepare_pa, craft::v1::PREPARED));
  ASSERT_TRUE(pb.SendAck(*prepare_pb, craft::v1::PREPARED));
  std::optional<craft::v1::PlannerMessage> commit_pa = pa.Read();
  std::optional<craft::v1::PlannerMessage> commit_pb = pb.Read();
  ASSERT_TRUE(commit_pa && commit_pa->has_commit() && commit_pb && commit_pb->has_commit());
  ASSERT_TRUE(pa.SendAck(*commit_pa, craft::v1::COMMITTED));
  ASSERT_TRUE(pb.SendAck(*commit_pb, craft::v1::COMMITTED));
  ASSERT_TRUE(Eventually([&] { return !group_of("prefill")->coordinator->apply_in_progress(); }));

  const craft::v1::LayoutStatus prefill = layout("prefill");
  EXPECT_EQ(prefill.committed().version(), "1.1");
  EXPECT_EQ(prefill.group(), "prefill");
  EXPECT_EQ(layout("decode").committed().version(), "0.0");
  // Each group persists its own state.
  EXPECT_EQ((*FileStateStore(config.state_path + ".prefill").Load())->committed.version(), "1.1");

  // A request must name its group too.
  grpc::ClientContext context;
  SetDeadline(&context);
  craft::v1::LayoutStatus unnamed;
  EXPECT_EQ(placement_->GetLayout(&context, {}, &unnamed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext explain_context;
  SetDeadline(&explain_context);
  craft::v1::ExplainRequest explain_request;
  explain_request.set_group("decode");
  craft::v1::ExplainResponse explain;
  ASSERT_TRUE(placement_->Explain(&explain_context, explain_request, &explain).ok());
  EXPECT_EQ(explain.group(), "decode");
}

}  // namespace
}  // namespace craft::server
