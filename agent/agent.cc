#include "agent/agent.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/socket_file.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "grpcpp/server_posix.h"

namespace craft::agent {
namespace {

// Admitted worker connections become gRPC connections of the worker server.
class GrpcConnectionHandler final : public ConnectionHandler {
 public:
  explicit GrpcConnectionHandler(grpc::Server* server) : server_(server) {}
  void OnConnection(int fd, const PeerCredentials&) override {
    grpc::AddInsecureChannelFromFd(server_, fd);  // takes the descriptor
  }

 private:
  grpc::Server* const server_;
};

std::string OctalMode(mode_t mode) {
  char text[16];
  std::snprintf(text, sizeof(text), "0%o", static_cast<unsigned>(mode));
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(AgentOptions options, Clock* clock) {
  if (options.planner_target.empty()) {
    return absl::InvalidArgumentError("the planner address is empty");
  }
  if (absl::Status s = options.backoff.Validate(); !s.ok()) return s;
  if (absl::Status s = ValidateTransportSecurity(options.security); !s.ok()) return s;
  // Before anything starts: a socket another agent listens on fails the start.
  if (absl::Status s = PrepareSocketPath(options.socket_path); !s.ok()) return s;

  std::unique_ptr<Agent> agent(new Agent(std::move(options), clock));
  const AgentOptions& o = agent->options_;
  if (o.state_file.empty()) {
    agent->store_ = std::make_unique<MemoryStateStore>();
  } else {
    agent->store_ = std::make_unique<FileStateStore>(o.state_file);
  }
  agent->link_ = std::make_unique<PlannerLink>(
      PlannerLink::Options{o.planner_target, o.security, o.planner_name, o.group, o.backoff,
                           o.seed},
      clock);
  absl::StatusOr<std::unique_ptr<NodeState>> node =
      NodeState::Create(o.node, clock, agent->store_.get(), agent->link_.get());
  if (!node.ok()) return node.status();
  agent->node_ = *std::move(node);
  agent->service_ = std::make_unique<WorkerService>(agent->node_.get());

  // The standard health service on every server built from here on; only
  // the health server listens on TCP.
  grpc::EnableDefaultHealthCheckService(true);
  if (!o.health_listen.empty()) {
    grpc::ServerBuilder health;
    health.AddListeningPort(o.health_listen, MakeServerCredentials(o.security),
                            &agent->health_port_);
    // A server needs a service of its own besides health: this one answers
    // every other method UNIMPLEMENTED.
    agent->unimplemented_ = std::make_unique<grpc::CallbackGenericService>();
    health.RegisterCallbackGenericService(agent->unimplemented_.get());
    agent->health_server_ = health.BuildAndStart();
    if (agent->health_server_ == nullptr || agent->health_port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot serve health on ", o.health_listen));
    }
  }
  // The server has no listening port: the listener accepts on the socket,
  // checks who connects and hands gRPC only the connections it admits.
  grpc::ServerBuilder builder;
  builder.RegisterService(agent->service_.get());
  agent->server_ = builder.BuildAndStart();
  if (agent->server_ == nullptr) return absl::UnavailableError("cannot start the worker server");
  agent->to_server_ = std::make_unique<GrpcConnectionHandler>(agent->server_.get());
  absl::StatusOr<std::unique_ptr<UnixSocketListener>> listener = UnixSocketListener::Listen(
      {o.socket_path, o.socket_mode, o.socket_peers}, agent->to_server_.get());
  if (!listener.ok()) return listener.status();  // ~Agent shuts the server down again
  agent->listener_ = *std::move(listener);
  agent->listener_->Start();
  CRAFT_LOG(INFO) << "agent " << o.node.node << " listening on unix:" << o.socket_path << " (mode "
                  << OctalMode(o.socket_mode) << ", uid " << o.socket_peers.uid << " or gid "
                  << o.socket_peers.gid << "); epoch " << agent->node_->highest_epoch()
                  << ", committed '" << agent->node_->committed_version() << "'";
  if (!o.ready_file.empty()) {
    const std::string health =
        agent->health_port_ > 0 ? absl::StrCat("health_port=", agent->health_port_, "\n") : "";
    if (absl::Status s = ::craft::WriteFileAtomically(
            o.ready_file, "socket=" + o.socket_path + "\n" + health + o.ready_extra);
        !s.ok()) {
      return s;  // ~Agent shuts the server down again
    }
  }
  return agent;
}

Agent::~Agent() { Shutdown(); }

bool Agent::WaitForWorkers(absl::Time deadline, absl::Notification* cancel) {
  while (!node_->AllWorkersAttached()) {
    const absl::Time now = clock_->Now();
    if (now >= deadline || cancel->HasBeenNotified()) return false;
    cancel->WaitForNotificationWithTimeout(std::min(deadline - now, absl::Milliseconds(20)));
  }
  return true;
}

void Agent::ConnectPlanner() { link_->Start(node_.get()); }

void Agent::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (health_server_ != nullptr) {
    health_server_->GetHealthCheckService()->Shutdown();  // NOT_SERVING
  }
  // No new worker connections from here on (and no socket file): the
  // listener hands nothing to a server that is shutting down.
  if (listener_ != nullptr) listener_->Stop();
  if (link_ != nullptr) link_->Stop();
  if (server_ != nullptr) {
    service_->Drain();
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.shutdown_deadline));
    if (!service_->WaitUntilIdle(options_.shutdown_deadline)) {
      CRAFT_LOG(WARNING) << service_->open_streams() << " worker streams still open at exit";
    }
    CRAFT_LOG(INFO) << "agent stopped";
  }
  if (health_server_ != nullptr) {
    health_server_->Shutdown(std::chrono::system_clock::now() +
                             absl::ToChronoMilliseconds(options_.shutdown_deadline));
  }
}

}  // namespace craft::agent
