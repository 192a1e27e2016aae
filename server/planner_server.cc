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
  const std::vector<PlacementGroup> groups = EffectiveGroups(config);
  if (options.state_store != nullptr && groups.size() > 1) {
    return absl::InvalidArgumentError("an injected state store serves one placement group");
  }
  std::vector<std::unique_ptr<GroupStack>> stacks;
  for (const PlacementGroup& group : groups) {
    CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<GroupStack> stack,
                           server->BuildGroup(config, group, groups.size() == 1));
    stacks.push_back(std::move(stack));
  }
  server->groups_ = std::make_unique<PlacementGroups>(std::move(stacks));
  // Roles are the document's (admins, readers, token): any group's
  // authorizer grants them alike.
  const Authorizer* roles = server->first().agents.get();
  std::function<void(absl::Duration)> on_load_handled;
  if (PlannerObserver* observer = options.observer; observer != nullptr) {
    on_load_handled = [observer](absl::Duration handling) {
      observer->OnAgentLoadHandled(handling);
    };
  }
  server->gateway_ = std::make_unique<AgentGatewayService>(
      server->groups_.get(), options.directory, options.clock, std::move(on_load_handled));
  server->placement_ = std::make_unique<PlacementServiceImpl>(config, roles, server->groups_.get(),
                                                              options.directory);
  if (options.follower) {
    CRAFT_RETURN_IF_ERROR(server->Serve(config));
    server->SetServing(false);  // until a leader is known
    CRAFT_LOG(INFO) << "craft-planner following on port " << server->port_;
    return server;
  }
  for (const std::unique_ptr<GroupStack>& group : server->groups_->all()) {
    server->ConnectGroup(group.get());
  }
  CRAFT_RETURN_IF_ERROR(server->Serve(config));
  for (const std::unique_ptr<GroupStack>& group : server->groups_->all()) {
    group->loop->Start();
    CRAFT_LOG(INFO) << "placement group " << group->name() << ": "
                    << group->config().cluster.num_gpus << " GPUs, committed "
                    << group->coordinator->committed().version;
  }
  CRAFT_LOG(INFO) << "craft-planner listening on port " << server->port_ << " (epoch "
                  << server->first().coordinator->epoch() << ", " << server->groups_->all().size()
                  << " placement group" << (server->groups_->all().size() == 1 ? "" : "s") << ")";
  return server;
}

absl::StatusOr<std::unique_ptr<GroupStack>> PlannerServer::BuildGroup(const PlannerConfig& config,
                                                                      const PlacementGroup& group,
                                                                      bool only_group) {
  auto stack = std::make_unique<GroupStack>();
  stack->group = group;
  const PlannerConfig& own = stack->group.config;
  CRAFT_ASSIGN_OR_RETURN(Authorizer authorizer,
                         Authorizer::Create(own.security, own.cluster, options_.security.insecure));
  stack->agents = std::make_unique<Authorizer>(std::move(authorizer));
  stack->history = std::make_unique<LayoutHistory>(options_.layout_history);
  stack->load_store = std::make_unique<LoadStore>(
      LoadStoreOptions{own.model.num_layers, own.model.num_experts, own.cluster, own.window_horizon,
                       own.decay, options_.clock, own.max_clock_skew},
      stack->history.get());
  if (options_.follower) return stack;
  StateStore* state_store = options_.state_store;
  if (auto it = options_.group_state_stores.find(group.name);
      it != options_.group_state_stores.end()) {
    state_store = it->second;
  }
  if (state_store == nullptr) {
    if (config.state_path.empty()) return absl::InvalidArgumentError("no state_path configured");
    stack->owned_state_store =
        std::make_unique<FileStateStore>(GroupStateName(config, config.state_path, group.name));
    state_store = stack->owned_state_store.get();
  }
  CoordinatorOptions coordinator_options{own.model, own.cluster, own.apply_timeout};
  coordinator_options.epoch = options_.epoch;
  coordinator_options.may_push = options_.may_push;
  absl::StatusOr<std::unique_ptr<ApplyCoordinator>> coordinator = ApplyCoordinator::Create(
      coordinator_options, state_store, stack->history.get(), options_.clock);
  if (!coordinator.ok()) {
    if (only_group) return coordinator.status();
    return absl::Status(
        coordinator.status().code(),
        absl::StrCat("placement group ", group.name, ": ", coordinator.status().message()));
  }
  stack->coordinator = *std::move(coordinator);
  return stack;
}

void PlannerServer::ConnectGroup(GroupStack* group) {
  PlannerObserver* observer = options_.observer;
  const std::string name = group->name();
  ReplanLoop::Observer on_replan;
  if (observer != nullptr) {
    on_replan = [observer, name](const ReplanOutcome& outcome) {
      observer->OnReplan(name, outcome);
    };
  }
  group->loop =
      std::make_unique<ReplanLoop>(group->config(), group->load_store.get(),
                                   group->coordinator.get(), options_.clock, std::move(on_replan));
  std::vector<const LoadStore*> peers;
  for (const GroupStack* peer : groups_->FamilyPeers(*group)) {
    peers.push_back(peer->load_store.get());
  }
  group->loop->PoolWith(std::move(peers));

  PlacementServiceImpl* placement = placement_.get();
  ReplanLoop* loop = group->loop.get();
  ApplyCoordinator::Hooks hooks;
  hooks.on_commit = [placement, name](const CommittedLayout& committed, int64_t epoch) {
    placement->PublishCommit(name, committed, epoch);
  };
  hooks.on_deadline_changed = [loop] { loop->Wake(); };
  if (observer != nullptr) {
    hooks.on_apply_finished = [observer, name](const ApplyRecord& record) {
      observer->OnApplyFinished(name, record);
    };
  }
  group->coordinator->SetHooks(std::move(hooks));
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

void PlannerServer::StopLoops() {
  if (groups_ == nullptr) return;
  for (const std::unique_ptr<GroupStack>& group : groups_->all()) {
    if (group->loop != nullptr) group->loop->Stop();
  }
}

void PlannerServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ == nullptr) {  // Start failed half-way: nothing is serving
    StopLoops();
    return;
  }
  CRAFT_LOG(INFO) << "draining";
  server_->GetHealthCheckService()->Shutdown();  // NOT_SERVING from now on
  for (const std::unique_ptr<GroupStack>& group : groups_->all()) {
    if (group->coordinator != nullptr) group->coordinator->BeginDrain();
  }
  StopLoops();
  gateway_->Drain();
  placement_->Drain();
  // A real deadline: gRPC's clock, not the injected one.
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(options_.shutdown_grace));
  server_->Wait();
  CRAFT_LOG(INFO) << "stopped";
}

}  // namespace craft::server
