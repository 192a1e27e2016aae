// The planner service assembled: per placement group a state store, layout
// history, load store, apply coordinator and replan loop
// (server/placement_groups.h), and the gRPC server (AgentGateway,
// PlacementService, health, reflection) listening on the configured address.
// main.cc is flags and signals around this; tests start it on 127.0.0.1:0.
//
//   CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<PlannerServer> server,
//                          PlannerServer::Start(config, ServerOptions{}));
//   int port = server->port();
//   ...
//   server->Shutdown();  // graceful: drain streams, stop the loop
//
// Thread-safety: Start and Shutdown from one thread; accessors are
// thread-safe (they return thread-safe components).
#ifndef CRAFT_SERVER_PLANNER_SERVER_H_
#define CRAFT_SERVER_PLANNER_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/transport_security.h"
#include "server/apply_coordinator.h"
#include "server/authorizer.h"
#include "server/config.h"
#include "server/layout_history.h"
#include "server/leader_directory.h"
#include "server/load_store.h"
#include "server/placement_groups.h"
#include "server/planner_observer.h"
#include "server/replan_loop.h"
#include "server/state_store.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace craft::server {

class AgentGatewayService;
class PlacementServiceImpl;

struct ServerOptions {
  // Mutual TLS on the port, or plaintext with `security.insecure`; neither
  // is assumed.
  TransportSecurity security;
  Clock* clock = Clock::Real();
  // Null: a FileStateStore per group at GroupStateName(config, config.state_path).
  // Given, it serves the only group (refused with several). Must outlive the
  // server.
  StateStore* state_store = nullptr;
  // Per placement group, by name (high availability: one etcd key each);
  // takes precedence over the two above. Must outlive the server.
  std::map<std::string, StateStore*> group_state_stores;
  // Larger messages are refused by gRPC with RESOURCE_EXHAUSTED.
  // The largest legitimate message, a Plan request of a large model or a
  // node's load windows, is well under 1 MiB; every read buffer this admits
  // is memory an attacker with a certificate can make the planner hold.
  int max_receive_message_bytes = 16 << 20;
  // How long Shutdown lets calls finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Recent layout versions kept for mapping loads and sourcing transfers.
  int layout_history = 8;
  // Told about replans and finished applies (metrics); null: nobody. Must
  // outlive the server.
  PlannerObserver* observer = nullptr;

  // High availability (server/ha_planner.h). A leader gets its epoch from the
  // election and stops pushing when `may_push` turns false; a follower
  // builds no coordinator and no replan loop, refuses agents and writes with
  // the leader's address, and serves reads from what
  // placement()->PublishCommit is given. `directory` (must outlive the
  // server) names the leader in both roles.
  int64_t epoch = 0;
  std::function<bool()> may_push;
  bool follower = false;
  const LeaderDirectory* directory = nullptr;
};

class PlannerServer {
 public:
  // Builds every component and starts serving (and the replan loop).
  static absl::StatusOr<std::unique_ptr<PlannerServer>> Start(const PlannerConfig& config,
                                                              const ServerOptions& options);
  ~PlannerServer();  // Shutdown()s

  // The port bound (the configured one, or the one picked for port 0).
  int port() const { return port_; }

  // Health NOT_SERVING, drain (abort a prepare, end every stream with
  // UNAVAILABLE "planner draining"), stop the replan loop, then shut the
  // server down with `shutdown_grace`. Idempotent.
  void Shutdown();

  // The gRPC health service's answer (readiness): a follower serves once it
  // knows a leader to send agents to.
  void SetServing(bool serving);

  // Every placement group's components (coordinators and loops are null on
  // a follower).
  const PlacementGroups& groups() const { return *groups_; }
  // The first group's (the only one's without `groups`): null on a follower.
  ApplyCoordinator* coordinator() { return first().coordinator.get(); }
  const ApplyCoordinator* coordinator() const { return first().coordinator.get(); }
  LoadStore* load_store() { return first().load_store.get(); }
  const LoadStore* load_store() const { return first().load_store.get(); }
  ReplanLoop* replan_loop() { return first().loop.get(); }
  PlacementServiceImpl* placement() { return placement_.get(); }

 private:
  PlannerServer() = default;
  // Registers the services and starts listening on config.listen_address.
  absl::Status Serve(const PlannerConfig& config);
  // A group's authorizer, history and load store; on a leader also its
  // state store and coordinator (the loop comes once every group's load
  // store exists: families pool them).
  absl::StatusOr<std::unique_ptr<GroupStack>> BuildGroup(const PlannerConfig& config,
                                                         const PlacementGroup& group,
                                                         bool only_group);
  // The group's loop and the coordinator's hooks into it, the placement
  // service and the observer.
  void ConnectGroup(GroupStack* group);
  void StopLoops();
  GroupStack& first() const { return *groups_->all().front(); }

  ServerOptions options_;
  std::unique_ptr<PlacementGroups> groups_;
  std::unique_ptr<AgentGatewayService> gateway_;
  std::unique_ptr<PlacementServiceImpl> placement_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLANNER_SERVER_H_
