// The planner's committed state (server/state_store.h: committed layout,
// version counter, epoch) in etcd, at <prefix>/state, in the same encoding
// as the state file (EncodePlannerState). Every write is one transaction
// guarded by the writer's term: "the leader key's create revision is still
// the one I created", so a deposed leader's write fails (FAILED_PRECONDITION)
// and tells the election it lost.
//
//   EtcdStateStore store(&election, term);
//   CRAFT_ASSIGN_OR_RETURN(std::optional<PlannerState> state, store.Load());
//
// Thread-safety: thread-safe.
#ifndef CRAFT_SERVER_ETCD_ETCD_STATE_STORE_H_
#define CRAFT_SERVER_ETCD_ETCD_STATE_STORE_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/etcd/leader_election.h"
#include "server/state_store.h"

namespace craft::server {

// etcd refuses requests over 1.5 MiB by default; a value over this bound in
// craft's key is not craft's (two 4096-GPU layouts take well under 1 MiB).
inline constexpr size_t kMaxStateValueBytes = 4 << 20;

// Reads the state at `key` (StateKey, or GroupStateName of it): nullopt when absent,
// DATA_LOSS (naming the key) for an oversized, garbled or unknown-version
// value. For leaders and followers.
absl::StatusOr<std::optional<PlannerState>> ReadEtcdState(EtcdClient* client,
                                                          absl::string_view key);

class EtcdStateStore : public StateStore {
 public:
  // `election` must outlive the store and have won `term`. The state lives
  // at `key`; "" is StateKey(prefix) (the only placement group's).
  EtcdStateStore(LeaderElection* election, LeaderTerm term, std::string key = "");

  absl::StatusOr<std::optional<PlannerState>> Load() override;
  // FAILED_PRECONDITION when this planner no longer leads (and the election
  // is told); UNAVAILABLE when etcd cannot be reached.
  absl::Status Save(const PlannerState& state) override;

  // Writes the last saved state back when its key vanished under the
  // leader (an operator's delete): logged as an error, repaired. Called
  // periodically by the leader.
  void RepairIfDeleted();

 private:
  LeaderElection* const election_;
  const LeaderTerm term_;
  const std::string key_;
  absl::Mutex mu_;  // one write at a time, in order
  std::optional<std::string> last_saved_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_ETCD_ETCD_STATE_STORE_H_
