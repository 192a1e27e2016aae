// The two-phase apply (proto/README.md, "Two-phase apply") and the resyncs
// of the committed layout ("Recovery"), as a state machine over an
// AgentRegistry of the agents, free of gRPC: agents are reached through the
// AgentConnection seam, time through a Clock, persistence through a
// StateStore, so every path (happy, NACK, timeout, disconnect, stale nonce,
// restart, resync) is unit-tested with fakes. Its agent-facing methods keep
// the registry current (hellos, loads, disconnects) and decide what each
// event means for the apply.
//
// States of one apply:
//
//   idle --StartApply--> preparing --every agent Ack{PREPARED}--> persisting
//     ^                      |                                     |       |
//     |   Nack / timeout / participant disconnects / drain        |       | saved:
//     +---- Abort to all <---+                                     |       | the commit point
//     +---- Abort to all <------------ the save failed ------------+       v
//     +------------- every agent Ack{COMMITTED} (or timeout) --------- committing
//
// Persisting: the commit is being written to the StateStore, with the mutex
// released (a file fsync, or an etcd round trip), by the HandleAck that
// brought the last PREPARED. The version's fate is the save's alone, so
// nothing that happens meanwhile aborts it: not a participant leaving or
// reconnecting (it is dropped from the apply, as after the commit point), a
// late Ack or Nack (ignored: every participant answered), a timeout or a
// drain. No apply starts, no resync is driven (the committed version is about
// to move), and a hello in doubt about the version gets no Abort. Once the
// save returns, the mutex is retaken and the commit published (Commit to the
// participants, resyncs to the nodes that left or came meanwhile) or, when
// the save failed, the apply aborted (kPersistFailed).
//
//   CRAFT_ASSIGN_OR_RETURN(auto coordinator,
//                          ApplyCoordinator::Create(options, &state_store, &history, clock));
//   coordinator->Connect(hello, connection);         // gateway, per stream
//   CRAFT_ASSIGN_OR_RETURN(std::string version, coordinator->StartApply(layout));
//   coordinator->HandleAck(node, connection, ack);   // gateway
//   coordinator->CheckTimeouts();                    // replan loop, periodically
//
// Recovery (proto/README.md, "Recovery"): the persisted committed version is
// the decision of record. Every connected node that is not on it (it
// restarted, missed a Commit, lost a worker) gets a Commit of it carrying
// the layout, at once on its hello and again after resync_retry while it
// refuses; such resyncs are never gated by modelled gain, and no new apply
// starts until every node is on the committed version. A node whose hello
// names an in-doubt prepared version that is not the committed one gets an
// Abort of it.
//
// Versions are "<epoch>.<seq>"; the epoch is bumped and persisted by Create,
// so no version is ever minted twice, even across restarts. A Nack or an Ack
// whose nonce is not the one awaited from that node is ignored (counted).
//
// Thread-safety: all methods are thread-safe. One internal mutex guards the
// apply and the registry together (agent_registry.h says why one), and it is
// never held across I/O: the StateStore::Save of a commit runs without it
// (persisting, above), so agents' loads and hellos, views and timeouts never
// wait for the disk or etcd. The coordinator calls
// AgentConnection methods and the commit and apply-finished hooks with the
// mutex held, so they must not block or call back into the coordinator. The
// out-of-sync hook is called without it. Lock order: coordinator, then
// LayoutHistory / connection / hook internals; the state store's own lock is
// never taken while the coordinator's is held.
#ifndef CRAFT_SERVER_APPLY_COORDINATOR_H_
#define CRAFT_SERVER_APPLY_COORDINATOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "planner/cluster.h"
#include "planner/layout.h"
#include "server/agent_registry.h"
#include "server/config.h"
#include "server/layout_history.h"
#include "server/state_store.h"

namespace craft::server {

struct CoordinatorOptions {
  ModelShape model;
  planner::ClusterShape cluster;
  absl::Duration apply_timeout = absl::Seconds(60);
  // After a node refused a resync (a worker missing, say) or let it time
  // out, wait this long before re-driving it; a new hello re-drives at once.
  absl::Duration resync_retry = absl::Seconds(2);
  // High availability: the epoch the leader election handed out (it must
  // exceed the stored one). 0: one planner, which takes the stored epoch + 1.
  int64_t epoch = 0;
  // High availability: false once this planner may no longer push (it lost
  // its lease); StartApply is refused from then on. Unset: always true.
  std::function<bool()> may_push;
};

struct CommittedLayout {
  std::string version;
  std::shared_ptr<const planner::Layout> layout;
};

// Why an apply was aborted (the `reason` label of
// craft_planner_apply_aborts_total).
enum class AbortReason {
  kAgentNack,      // an agent refused the prepare
  kTimeout,        // not every agent was PREPARED in time
  kAgentLeft,      // a participant disconnected or reconnected during prepare
  kDraining,       // the planner is shutting down
  kPersistFailed,  // the commit could not be persisted
};
inline constexpr int kNumAbortReasons = 5;
absl::string_view AbortReasonName(AbortReason reason);

// How an apply ended, for metrics: at the commit point or at the abort.
struct ApplyRecord {
  std::string version;
  bool committed = false;
  AbortReason abort_reason = AbortReason::kAgentNack;  // when !committed
  absl::Duration prepare_duration;  // from Prepare sent to the commit point (or abort)
  int64_t transfer_bytes = 0;       // expert bytes copied between GPUs
  int transfers = 0;                // experts copied between GPUs
  // The commit point's StateStore::Save (committed, or kPersistFailed).
  absl::Duration persist_duration;
};

// Cumulative counts since the coordinator was created.
struct CoordinatorStats {
  int64_t applies_started = 0;
  int64_t applies_committed = 0;
  int64_t applies_aborted = 0;
  std::array<int64_t, kNumAbortReasons> aborts_by_reason = {};
  int64_t stale_answers_ignored = 0;  // Ack/Nack with a nonce not awaited
  int64_t agent_connects = 0;         // hellos accepted
  int64_t agent_disconnects = 0;      // streams of connected nodes that ended
  // Nacks received, by craft.v1.ErrorCode value.
  std::array<int64_t, craft::v1::ErrorCode_ARRAYSIZE> nacks_by_code = {};
  int64_t transfer_bytes_committed = 0;  // bytes moved by committed applies
  // Commits of the committed layout re-driven to nodes not on it, and how
  // many of them every worker of the node answered (the node is in sync).
  int64_t resyncs_started = 0;
  int64_t resyncs_completed = 0;
  int64_t resyncs_failed = 0;  // refused or timed out: re-driven later
  // In-doubt versions (prepared, never committed) a node named in its hello,
  // aborted.
  int64_t in_doubt_aborted = 0;
};

class ApplyCoordinator {
 public:
  struct Hooks {
    // After the commit point, with the coordinator's mutex held.
    std::function<void(const CommittedLayout&, int64_t epoch)> on_commit;
    // When an apply reaches the commit point or is aborted, with the
    // coordinator's mutex held.
    std::function<void(const ApplyRecord&)> on_apply_finished;
    // When NextDeadline may have moved earlier (a resync went out or must be
    // retried): whoever calls CheckTimeouts should look again. Called
    // without the mutex.
    std::function<void()> on_deadline_changed;
  };

  // Loads the persisted state (none: the initial layout "0.0"), bumps the
  // epoch (or takes options.epoch) and persists it before anything is minted. `state_store`,
  // `history` and `clock` must outlive the coordinator.
  static absl::StatusOr<std::unique_ptr<ApplyCoordinator>> Create(const CoordinatorOptions& options,
                                                                  StateStore* state_store,
                                                                  LayoutHistory* history,
                                                                  Clock* clock);

  // Set once, before agents connect.
  void SetHooks(Hooks hooks);

  // ---- Agent streams (the gateway) ----

  // Registers the stream's AgentHello (AgentRegistry::CheckHello says what
  // is refused; UNAVAILABLE while draining). A node already connected is
  // replaced: its old stream is closed (and a prepare it takes part in is
  // aborted). The node gets a Welcome, and a resync or an Abort of its
  // in-doubt version as "Recovery" says.
  absl::Status Connect(const craft::v1::AgentHello& hello,
                       std::shared_ptr<AgentConnection> connection);
  // The stream ended. Ignored unless `connection` is the node's current one.
  void Disconnect(const std::string& node, const AgentConnection* connection);
  // The Ack that completes a prepare persists the commit (with the mutex
  // released) and publishes it before returning.
  void HandleAck(const std::string& node, const AgentConnection* connection,
                 const craft::v1::Ack& ack);
  void HandleNack(const std::string& node, const AgentConnection* connection,
                  const craft::v1::Nack& nack);
  // A NodeLoad from the node: AgentRegistry::OnLoad.
  void OnLoad(const std::string& node, const AgentConnection* connection,
              const craft::v1::NodeLoad& load);

  // ---- Applies (the replan loop) ----

  // Mints a version for `target`, plans every GPU's transfers from the
  // version it serves and sends Prepare to every connected agent, each
  // carrying the layout as a delta from the committed one (PrepareFanout),
  // its node's transfers and the latest transfer group id rank 0 announced.
  // Returns the version. FAILED_PRECONDITION when an apply is in progress, a
  // GPU has no connected agent, a node is not on the committed version yet
  // (its resync runs), some expert has no source, or the planner is fenced;
  // INVALID_ARGUMENT when `target` does not fit the model and cluster.
  absl::StatusOr<std::string> StartApply(const planner::Layout& target);
  // Aborts a prepare (or stops waiting for commit acks) past its deadline,
  // and re-drives resyncs that are due.
  void CheckTimeouts();
  // When CheckTimeouts next has something to do; nullopt when idle.
  std::optional<absl::Time> NextDeadline() const;
  // Stops accepting agents and aborts a prepare in progress (a commit being
  // persisted is not: the save decides).
  void BeginDrain();

  // ---- Views ----
  CommittedLayout committed() const;
  int64_t epoch() const { return epoch_; }
  // The version being prepared or persisted (not committed yet); ""
  // otherwise.
  std::string pending_version() const;
  // Preparing, persisting, or committed but still waiting for
  // Ack{COMMITTED}s.
  bool apply_in_progress() const;
  // Why the last apply was aborted ("" if none was).
  std::string last_abort_reason() const;
  // A connected agent claims a newer epoch than ours (in its hello, or by
  // NACKing STALE_EPOCH): another planner leads, or led, and that agent
  // refuses this one, so nothing can be applied while it stays connected.
  // A claim is no proof (proto/README.md): it fences this planner only as
  // long as that node's stream lasts, and never changes what is persisted.
  bool fenced() const;
  // Every node the registry knows (at most cluster.num_nodes: see
  // AgentRegistry::MakeRoomFor).
  std::vector<AgentSnapshot> Agents() const;
  // `count` more load windows of `node`'s GPUs refused by the load store.
  void CountRejectedWindows(const std::string& node, int64_t count);
  // Connected nodes serving another version than the committed one.
  std::vector<std::string> OutOfSyncNodes() const;
  // GPUs no connected agent claims.
  std::vector<int> GpusWithoutAgent() const;
  // The smallest staging headroom any connected GPU reports: what one apply
  // may bring into a GPU. nullopt when no GPU reports a limit.
  std::optional<int64_t> MinStagingHeadroom() const;
  CoordinatorStats stats() const;

 private:
  // What the apply and the resyncs know of one node of the registry, beside
  // what the registry knows (one per registered node, forgotten with it).
  struct NodeApplyState {
    // A resync Commit awaiting its answer: its nonce and deadline.
    std::string resync_nonce;
    absl::Time resync_deadline;
    absl::Time resync_retry_at;  // after a refused or timed-out one
    // Its hello claimed a newer epoch than ours, or it NACKed one of our
    // messages STALE_EPOCH: it refuses this planner until its next hello.
    bool refuses_our_epoch = false;
    // It refused a Prepare carrying a layout delta (BAD_LAYOUT): its copy of
    // the committed layout is not ours, so its Prepares carry the full
    // layout until it answers a commit.
    bool needs_full_layout = false;
  };
  // True when `nonce` answers the resync in flight (then consumed).
  static bool AnswersResync(NodeApplyState& apply, const std::string& nonce);

  // A node taking part in the apply in progress. It is connected, on
  // `connection`: one that leaves aborts a prepare, or is dropped from the
  // apply past it.
  struct Participant {
    const AgentConnection* connection = nullptr;
    std::string nonce;       // of the last message sent to it in this apply
    bool answered = false;   // PREPARED while preparing, COMMITTED (or NACKed) while committing
    bool got_delta = false;  // its Prepare carried a layout delta, not the full layout
  };
  enum class Phase { kIdle, kPreparing, kPersisting, kCommitting };
  // What the commit point saves, taken under the mutex when the last agent
  // is PREPARED; saved without it.
  struct CommitToPersist {
    int64_t seq = 0;
    CommittedLayout next;      // the apply's version and layout
    CommittedLayout previous;  // the committed one until then
  };

  ApplyCoordinator(const CoordinatorOptions& options, StateStore* state_store,
                   LayoutHistory* history, Clock* clock, int64_t epoch, int64_t seq,
                   CommittedLayout committed);

  // The apply's state of registered node `name`; every registered node has
  // one.
  NodeApplyState& ApplyStateOf(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const NodeApplyState& ApplyStateOf(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Participant* AwaitedParticipant(const std::string& node, const std::string& nonce)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  craft::v1::PlannerMessage NewMessage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // HandleAck under the mutex; what to persist when the Ack completed the
  // prepare (the phase is then kPersisting).
  std::optional<CommitToPersist> HandleAckLocked(const std::string& node,
                                                 const AgentConnection* connection,
                                                 const craft::v1::Ack& ack)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Saves `commit`, then retakes the mutex to publish it or, when the save
  // failed, abort the apply.
  void PersistCommit(const CommitToPersist& commit) ABSL_LOCKS_EXCLUDED(mu_);
  // The commit point passed: `apply_version_` is the committed layout.
  void PublishCommitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AbortLocked(AbortReason why, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports the apply in progress to the on_apply_finished hook.
  void RecordFinishedLocked(bool committed, AbortReason why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishCommittingIfDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a Commit of the committed layout to every connected node not on it
  // that has no resync in flight, no retry pending and is not held back.
  void DriveResyncsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when a connected node that is not on the committed version must not
  // be resynced now whatever the time: it refuses our epoch, it takes part in
  // the apply in progress (it is resynced after it), the commit point is
  // being persisted (the committed version is about to move), or the planner
  // drains. One rule for DriveResyncsLocked and NextDeadline, so that the
  // loop is never woken for a resync that will not go out.
  bool ResyncHeldBackLocked(const std::string& name, const NodeApplyState& apply) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Connected nodes that refuse this planner's epoch.
  std::vector<std::string> RefusingNodesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Connected nodes not on the committed version, or still answering a resync.
  std::vector<std::string> OutOfSyncNodesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // HandleNack under the mutex; true when NextDeadline may have moved.
  bool HandleNackLocked(const std::string& node, const AgentConnection* connection,
                        const craft::v1::Nack& nack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A participant left (disconnect or replacement): aborts a prepare; drops
  // it from an apply past the prepare (persisting or committing).
  void ParticipantLeftLocked(const std::string& node, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  StateStore* const state_store_;
  LayoutHistory* const history_;
  Clock* const clock_;
  const int64_t epoch_;

  mutable absl::Mutex mu_;
  Hooks hooks_ ABSL_GUARDED_BY(mu_);
  int64_t seq_ ABSL_GUARDED_BY(mu_);
  int64_t nonce_counter_ ABSL_GUARDED_BY(mu_) = 0;
  CommittedLayout committed_ ABSL_GUARDED_BY(mu_);
  AgentRegistry registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, NodeApplyState> node_apply_ ABSL_GUARDED_BY(mu_);  // by node
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  CoordinatorStats stats_ ABSL_GUARDED_BY(mu_);
  std::string last_abort_reason_ ABSL_GUARDED_BY(mu_);

  // The apply in progress.
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kIdle;
  std::string apply_version_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const planner::Layout> apply_layout_ ABSL_GUARDED_BY(mu_);
  absl::Time apply_deadline_ ABSL_GUARDED_BY(mu_);
  absl::Time apply_started_ ABSL_GUARDED_BY(mu_);
  absl::Duration apply_persist_duration_ ABSL_GUARDED_BY(mu_);  // ApplyRecord::persist_duration
  int64_t apply_transfer_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int apply_transfers_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Participant> participants_ ABSL_GUARDED_BY(mu_);  // by node
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_APPLY_COORDINATOR_H_
