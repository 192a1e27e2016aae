// Leader election among planners on an etcd lease (proto/README.md, "High
// availability"). Keys under `prefix`:
//
//   <prefix>/leader  the leader's address, attached to its lease: it vanishes
//                    when the lease expires or is revoked
//   <prefix>/epoch   the last epoch handed out (decimal)
//
// Campaign wins with one transaction: "the leader key is absent and the epoch
// key is unchanged since I read it" => create the leader key on my lease and
// write epoch + 1. So every new leader's epoch is strictly greater than every
// earlier one (the agents' epoch fencing keeps working unchanged), and the
// leader key's create revision identifies this term: every write the leader
// makes is guarded by it (EtcdStateStore), so a deposed leader's write fails.
//
//   LeaderElection election(&client, options);
//   CRAFT_ASSIGN_OR_RETURN(LeaderTerm term, election.Campaign());  // blocks
//   election.SetOnLost([&] { stop_pushing(); });
//   ... while (election.Leading()) push layouts ...
//   election.Resign();  // graceful: a follower takes over at once
//
// A keep-alive thread renews the lease every ttl/3 and, while leading, checks
// that the leader key is still ours. Leadership is lost, once and for good
// for this object, when etcd says the lease expired, the leader key changed,
// or no renewal succeeded before the lease's deadline as measured here from
// the last renewal sent (so an unreachable etcd or a paused process stops
// pushing no later than etcd can hand the lease to someone else).
//
// Thread-safety: thread-safe. The lost hook runs on the keep-alive thread (or
// the thread that called MarkLost) without internal locks held.
#ifndef CRAFT_SERVER_ETCD_LEADER_ELECTION_H_
#define CRAFT_SERVER_ETCD_LEADER_ELECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/etcd/etcd_client.h"

namespace craft::server {

struct ElectionOptions {
  std::string prefix;   // e.g. "/craft/<cluster>"; keys are <prefix>/leader, ...
  std::string address;  // how agents and clients reach this planner (host:port)
  absl::Duration lease_ttl = absl::Seconds(5);
  // How often a follower looks whether the leader key is gone.
  absl::Duration poll_interval = absl::Milliseconds(200);
};

// One leadership term.
struct LeaderTerm {
  int64_t epoch = 0;
  int64_t leader_revision = 0;  // the leader key's create revision
  int64_t lease_id = 0;
};

// Keys, one definition.
std::string LeaderKey(absl::string_view prefix);
std::string EpochKey(absl::string_view prefix);
std::string StateKey(absl::string_view prefix);

class LeaderElection {
 public:
  LeaderElection(EtcdClient* client, ElectionOptions options);
  ~LeaderElection();  // Stop()

  // Blocks until this process leads, or Stop() (CANCELLED). etcd errors and
  // garbage in the epoch key are logged and retried, never fatal: the
  // workers keep serving meanwhile. One term per object: FAILED_PRECONDITION
  // once it led or resigned (a new term takes a new LeaderElection).
  absl::StatusOr<LeaderTerm> Campaign();

  // True from a won Campaign until leadership is lost.
  bool Leading() const;
  // Sets the hook called once when leadership is lost. Before Campaign.
  void SetOnLost(std::function<void(absl::string_view why)> on_lost);
  // Leadership is lost (a guarded write found the leader key changed).
  void MarkLost(absl::string_view why);
  // Revokes the lease (leader key and all) so another planner takes over
  // without waiting for the TTL. Leadership ends.
  void Resign();
  // Unblocks Campaign, stops the keep-alive thread. Idempotent.
  void Stop();

  // Why the last campaign attempt failed (OK: it did not, or someone else
  // leads); for status pages and tests.
  absl::Status LastCampaignError() const;

  // The leader's address as etcd has it; "" when there is none.
  absl::StatusOr<std::string> CurrentLeader();

  const ElectionOptions& options() const { return options_; }
  EtcdClient* client() const { return client_; }

 private:
  // A lease that is alive (granted, renewed by the keep-alive thread).
  absl::StatusOr<int64_t> EnsureLease();
  // One attempt; nullopt: someone else leads.
  absl::StatusOr<std::optional<LeaderTerm>> TryToLead(int64_t lease_id);
  void KeepAliveLoop();
  bool SleepFor(absl::Duration duration);  // false when stopped

  EtcdClient* const client_;
  const ElectionOptions options_;

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time lease_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  LeaderTerm term_ ABSL_GUARDED_BY(mu_);
  absl::Status last_campaign_error_ ABSL_GUARDED_BY(mu_);
  std::function<void(absl::string_view)> on_lost_ ABSL_GUARDED_BY(mu_);
  std::thread keep_alive_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_ETCD_LEADER_ELECTION_H_
