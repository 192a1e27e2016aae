// The node agent assembled: state store, NodeState, the NodeAgent service on
// a Unix socket, and the planner link. main.cc adds flags and signals; the
// in-process test drives the same object.
//
//   auto agent = Agent::Start(options, Clock::Real());   // listening on the socket
//   (*agent)->WaitForWorkers(deadline, &shutdown);        // optional
//   (*agent)->ConnectPlanner();
//   while (!shutdown) (*agent)->Poll();                   // every ~20 ms
//   (*agent)->Shutdown();
//
// Thread-safety: Start/ConnectPlanner/Shutdown from one controlling thread;
// Poll and node() from any thread.
#ifndef CRAFT_AGENT_AGENT_H_
#define CRAFT_AGENT_AGENT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "agent/node_state.h"
#include "agent/planner_link.h"
#include "agent/state_file.h"
#include "agent/unix_socket_listener.h"
#include "agent/worker_service.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/transport_security.h"
#include "grpcpp/grpcpp.h"

namespace craft::agent {

struct AgentOptions {
  NodeState::Options node;
  std::string socket_path;    // the Unix socket workers attach on
  mode_t socket_mode = 0660;  // its file's mode
  // Who may connect to it (SO_PEERCRED): by default the agent's own uid and
  // gid only (UnixSocketListener).
  PeerPolicy socket_peers = PeerPolicy::OwnIds();
  std::string planner_target;  // host:port of AgentGateway
  // Mutual TLS to the planner and on the health port (or --insecure), and
  // the name the planner's certificate must carry.
  TransportSecurity security;
  std::string planner_name = "craft-planner";
  std::string group;        // the placement group (PlannerLink::Options::group)
  std::string state_file;   // "" = keep epoch and version in memory only
  std::string ready_file;   // "" = none; else "socket=<path>\n" once listening
  std::string ready_extra;  // more "key=value\n" lines for the ready file
  // "" = none; else host:port of a gRPC server (mutual TLS like every TCP
  // port, `security`) with only the standard health service
  // (grpc.health.v1), for probes (`craftctl health`): SERVING once started,
  // NOT_SERVING from Shutdown on. Port 0 picks one (the ready file gets
  // "health_port=<port>").
  std::string health_listen;
  Backoff::Options backoff;
  uint64_t seed = 0;  // reconnect jitter
  absl::Duration shutdown_deadline = absl::Seconds(2);
};

class Agent {
 public:
  // Loads the state, listens on the socket (removing a stale socket file;
  // the file gets `socket_mode`, and only `socket_peers` are served) and
  // writes the ready file. Errors: bad options, unreadable state, socket in use.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(AgentOptions options, Clock* clock);
  ~Agent();  // Shutdown()

  // Blocks until every configured worker is attached (true), or `deadline`
  // passes or `cancel` is notified (false).
  bool WaitForWorkers(absl::Time deadline, absl::Notification* cancel);
  // Starts the planner stream (and its reconnect loop). Once.
  void ConnectPlanner();
  void Poll() { node_->Poll(); }
  // Stops accepting workers and removes the socket file, closes the planner
  // stream, ends worker streams with UNAVAILABLE, shuts the server down
  // within the deadline. Idempotent.
  void Shutdown();

  NodeState* node() { return node_.get(); }
  const std::string& socket_path() const { return options_.socket_path; }
  int health_port() const { return health_port_; }
  // The workers' socket: connections accepted and refused (stopped, not
  // destroyed, by Shutdown).
  const UnixSocketListener* listener() const { return listener_.get(); }

 private:
  Agent(AgentOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}

  const AgentOptions options_;
  Clock* const clock_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<PlannerLink> link_;
  std::unique_ptr<NodeState> node_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;  // no port of its own: fed by listener_
  std::unique_ptr<ConnectionHandler> to_server_;
  std::unique_ptr<UnixSocketListener> listener_;
  std::unique_ptr<grpc::CallbackGenericService> unimplemented_;  // of health_server_
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_AGENT_H_
