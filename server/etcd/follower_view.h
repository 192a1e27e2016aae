// A follower's view of the leader's committed state and address in etcd:
// read at start, then again whenever a Watch on the prefix reports a change
// (and at least every `refresh`), so followers answer reads with what the
// leader committed and point agents at the leader.
//
//   FollowerView view(&election, {{"default", StateKey(prefix)}}, on_state, on_leader);
//   view.Start();
//   ...
//   view.Stop();
//
// Garbage in craft's keys is logged (rate-limited) and skipped: the view
// keeps what it had.
//
// Thread-safety: Start and Stop from one thread; the hooks run on the
// view's thread.
#ifndef CRAFT_SERVER_ETCD_FOLLOWER_VIEW_H_
#define CRAFT_SERVER_ETCD_FOLLOWER_VIEW_H_

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/time/time.h"
#include "server/etcd/leader_election.h"
#include "server/state_store.h"

namespace craft::server {

class FollowerView {
 public:
  // A placement group's committed state, as read from its key.
  using OnState = std::function<void(const std::string& group, const PlannerState&)>;
  using OnLeader = std::function<void(const std::string& address)>;

  // `election` (for its client, prefix and CurrentLeader) must outlive the
  // view. `state_keys`: each placement group's state key, under the prefix.
  FollowerView(LeaderElection* election, std::map<std::string, std::string> state_keys,
               OnState on_state, OnLeader on_leader, absl::Duration refresh = absl::Seconds(2));
  ~FollowerView();  // Stop()

  void Start();
  void Stop();

 private:
  void Run();
  void Refresh();

  LeaderElection* const election_;
  const std::map<std::string, std::string> state_keys_;  // by group
  const OnState on_state_;
  const OnLeader on_leader_;
  const absl::Duration refresh_;
  std::atomic<bool> stopped_{false};
  // Per group, the version and epoch of the state last handed on; the view's
  // thread only.
  std::map<std::string, std::pair<std::string, int64_t>> last_handed_;
  absl::Time last_logged_ = absl::InfinitePast();
  std::thread thread_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_ETCD_FOLLOWER_VIEW_H_
