#include "server/planner_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/transport_security.h"
#include "server/agent_gateway.h"
#include "server/placement_service.h"

namespace craft::server {

absl::StatusOr<std::unique_ptr<PlannerServer>> PlannerServer::Start(const PlannerConfig& config,
                                                                    const ServerOptions& options) {
  std::unique_ptr<PlannerServer> server(new PlannerServer());
  server->options_ = options;
  CRAFT_RETURN_IF_ERROR(ValidateTransportSecurity(options.security));
  absl::StatusOr<Authorizer> authorizer =
      Authorizer::Create(config.security, config.cluster, options.security.insecure);
  if (!authorizer.ok()) return authorizer.status();
  server->authorizer_ = std::make_unique<Authorizer>(*std::move(authorizer));
  StateStore* state_store = options.state_store;
  if (state_store == nullptr && !options.follower) {
    if (config.state_path.empty()) {
      return absl::InvalidArgumentError("no state_path configured");
    }
    server->owned_state_store_ = std::make_unique<FileStateStore>(config.state_path);
    state_store = server->owned_state_store_.get();
  }
  server->history_ = std::make_unique<LayoutHistory>(options.layout_history);
  server->load_store_ = std::make_unique<LoadStore>(
      LoadStoreOptions{config.model.num_layers, config.model.num_experts, config.cluster,
                       config.window_horizon, config.decay, options.clock, config.max_clock_skew},
      server->history_.get());
  if (options.follower) {
    server->gateway_ = std::make_unique<AgentGatewayService>(
        server->authorizer_.get(), nullptr, server->load_store_.get(), options.directory);
    server->placement_ = std::make_unique<PlacementServiceImpl>(config, server->authorizer_.get(),
                                                                nullptr, server->load_store_.get(),
                                                                nullptr, options.directory);
    CRAFT_RETURN_IF_ERROR(server->Serve(config));
    server->SetServing(false);  // until a leader is known
    CRAFT_LOG(INFO) << "craft-planner following on port " << server->port_;
    return server;
  }
  CoordinatorOptions coordinator_options{config.model, config.cluster, config.apply_timeout};
  coordinator_options.epoch = options.epoch;
  coordinator_options.may_push = options.may_push;
  absl::StatusOr<std::unique_ptr<ApplyCoordinator>> coordinator = ApplyCoordinator::Create(
      coordinator_options, state_store, server->history_.get(), options.clock);
  if (!coordinator.ok()) return coordinator.status();
  server->coordinator_ = *std::move(coordinator);
  PlannerObserver* observer = options.observer;
  ReplanLoop::Observer on_replan;
  if (observer != nullptr) {
    on_replan = [observer](const ReplanOutcome& outcome) { observer->OnReplan(outcome); };
  }
  server->loop_ =
      std::make_unique<ReplanLoop>(config, server->load_store_.get(), server->coordinator_.get(),
                                   options.clock, std::move(on_replan));
  std::function<void(absl::Duration)> on_load_handled;
  if (observer != nullptr) {
    on_load_handled = [observer](absl::Duration handling) {
      observer->OnAgentLoadHandled(handling);
    };
  }
  server->gateway_ = std::make_unique<AgentGatewayService>(
      server->authorizer_.get(), server->coordinator_.get(), server->load_store_.get(),
      options.directory, options.clock, std::move(on_load_handled));
  server->placement_ = std::make_unique<PlacementServiceImpl>(
      config, server->authorizer_.get(), server->coordinator_.get(), server->load_store_.get(),
      server->loop_.get(), options.directory);

  PlacementServiceImpl* placement = server->placement_.get();
  ReplanLoop* loop = server->loop_.get();
  ApplyCoordinator::Hooks hooks;
  hooks.on_commit = [placement](const CommittedLayout& committed, int64_t epoch) {
    placement->PublishCommit(committed, epoch);
  };
  hooks.on_deadline_changed = [loop] { loop->Wake(); };
  if (observer != nullptr) {
    hooks.on_apply_finished = [observer](const ApplyRecord& record) {
      observer->OnApplyFinished(record);
    };
  }
  server->coordinator_->SetHooks(std::move(hooks));

  CRAFT_RETURN_IF_ERROR(server->Serve(config));
  server->loop_->Start();
  CRAFT_LOG(INFO) << "craft-planner listening on port " << server->port_ << " (epoch "
                  << server->coordinator_->epoch() << ")";
  return server;
}

absl::Status PlannerServer::Serve(const PlannerConfig& config) {
  PlannerServer* server = this;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address, MakeServerCredentials(options_.security),
                           &server->port_);
  builder.RegisterService(server->gateway_.get());
  builder.RegisterService(server->placement_.get());
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  // Detect dead agents and half-open connections within ~40 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen_address));
  }
  return absl::OkStatus();
}

void PlannerServer::SetServing(bool serving) {
  if (server_ != nullptr) server_->GetHealthCheckService()->SetServingStatus(serving);
}

PlannerServer::~PlannerServer() { Shutdown(); }

void PlannerServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ == nullptr) {  // Start failed half-way: nothing is serving
    if (loop_ != nullptr) loop_->Stop();
    return;
  }
  CRAFT_LOG(INFO) << "draining";
  server_->GetHealthCheckService()->Shutdown();  // NOT_SERVING from now on
  if (coordinator_ != nullptr) coordinator_->BeginDrain();
  if (loop_ != nullptr) loop_->Stop();
  gateway_->Drain();
  placement_->Drain();
  // A real deadline: gRPC's clock, not the injected one.
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.shutdown_grace));
  server_->Wait();
  CRAFT_LOG(INFO) << "stopped";
}

}  // namespace craft::server
