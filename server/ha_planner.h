// One planner replica of a highly available group (proto/README.md, "High
// availability"): it follows until it wins the etcd election, leads until it
// loses the lease or is told to stop, then follows again.
//
//   follower: PlannerServer in follower mode (agents and writes are sent to
//             the leader, reads come from etcd through a FollowerView), while
//             LeaderElection::Campaign blocks
//   leader:   a full PlannerServer whose StateStore is the EtcdStateStore of
//             the won term, whose epoch is the term's, and whose coordinator
//             stops pushing the moment the lease is lost
//
// Each role is a fresh PlannerServer on the same address, so a deposed leader
// keeps nothing of its term: it drains (aborting an apply in flight, ending
// agent streams) and comes back as a follower that reads etcd like any other.
//
//   HaPlanner replica(config, options, "planner-0.craft:50051", hooks);
//   std::thread signals([&] { wait_for_sigterm(); replica.RequestStop(); });
//   absl::Status ended = replica.Run();
//
// Thread-safety: Run on one thread; RequestStop from any.
#ifndef CRAFT_SERVER_HA_PLANNER_H_
#define CRAFT_SERVER_HA_PLANNER_H_

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/config.h"
#include "server/etcd/leader_election.h"
#include "server/planner_server.h"

namespace craft::server {

class HaPlanner {
 public:
  struct Hooks {
    // A server of either role started (it is serving on its port).
    std::function<void(PlannerServer*, bool leader)> on_started;
    // It is about to be shut down.
    std::function<void(PlannerServer*)> on_stopping;
  };

  // `options` as for PlannerServer::Start; its state store, epoch, role and
  // directory are set here. `advertise_address` is how agents and clients
  // reach this replica (host:port), stored in etcd while it leads.
  HaPlanner(PlannerConfig config, ServerOptions options, std::string advertise_address,
            Hooks hooks);

  // Follows and leads until RequestStop; an error when etcd's client cannot
  // be set up or the port cannot be bound.
  absl::Status Run();
  void RequestStop();

 private:
  const PlannerConfig config_;
  const ServerOptions options_;
  const std::string advertise_address_;
  const Hooks hooks_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  LeaderElection* election_ ABSL_GUARDED_BY(mu_) = nullptr;  // of the current round
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_HA_PLANNER_H_
