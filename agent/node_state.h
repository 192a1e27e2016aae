// The node agent's protocol state machine (proto/README.md), free of gRPC:
// epoch fencing, the two-phase apply relay between the planner and the node's
// workers, load forwarding, and what survives a restart. The gRPC adapters
// (WorkerService, PlannerLink) turn stream events into calls here; everything
// this class says goes out through PlannerChannel and WorkerChannel, and time
// comes from an injected Clock, so tests drive it with fakes and a FakeClock.
//
//   MemoryStateStore store;
//   auto node = NodeState::Create(options, Clock::Real(), &store, &planner_link);
//   (*node)->AttachWorker(hello, &worker_stream);    // worker stream adapter
//   (*node)->OnPlannerMessage(message);              // planner stream adapter
//   (*node)->Poll();                                 // every few ms: timeouts, load flushes
//
// Apply lifecycle of one version V (at most one at a time):
//   Prepare{V}  -> validate (else Nack BAD_LAYOUT), every configured worker
//                  attached (else Nack WORKER_MISSING), forward to each
//   Preparing   -> all READY: Ack PREPARED | one FAILED: Nack WORKER_FAILED |
//                  a worker detaches: Nack WORKER_MISSING | deadline: Nack TIMEOUT
//                  (a Nack also forwards Abort{V} so workers drop staging)
//   Prepared    -> Commit{V}: forward to attached workers -> Committing
//   Committing  -> all FLIPPED: committed_version = V (persisted), Ack COMMITTED;
//                  failed/missing/deadline: Nack; V was recorded when the Commit came
//   Abort{V}    -> forward, Ack ABORTED once every worker DROPPED (at once if none)
// A new Prepare supersedes a pending, uncommitted apply (aborted locally, not
// answered); one arriving while a commit runs waits for it (latest wins).
// A Nacked prepare is remembered as aborted, so the planner's Abort{V} that
// follows gets Ack ABORTED; versions are never accepted twice.
// Losing the planner aborts an apply still preparing locally; one PREPARED is
// "in doubt": its staging is kept and the next hello names it
// (prepared_version) until the planner says Commit or Abort. A running commit
// completes. Nothing else changes while the planner is away (static
// stability).
//
// Recovery (proto/README.md, "Recovery"): a Commit is recorded with its
// layout (persisted) before any worker flips. Any worker that serves another
// version than the recorded one (it restarted, it missed the flip, the agent
// restarted mid-commit) is brought to it by the agent itself: Prepare with
// load_missing_from_checkpoint, then Commit (Reconcile). A Commit the planner
// re-drives for a node not on its committed version (carrying the layout)
// is recorded the same way and answered once every worker is on it.
//
// Model shape (NodeModel): from the agent's flags, else from the planner's
// Welcome (persisted), never from a worker. Until it is known, workers are
// refused UNAVAILABLE (they retry); when a Welcome changes it, attached
// workers whose model no longer fits are detached and their streams ended.
//
// Loads: GpuWindows are checked (stream's GPU, increasing ids, layer count,
// non-negative counts), batched per window id (WindowBatcher) and sent as
// NodeLoads; while the planner is away the last `max_buffered_loads` wait and
// older ones are dropped and counted.
//
// Thread-safety: thread-safe; every public method takes the one internal lock.
// Channels are called with that lock held (see channels.h). State-file writes
// (rare: a new epoch, a commit) happen under the lock too.
#ifndef CRAFT_AGENT_NODE_STATE_H_
#define CRAFT_AGENT_NODE_STATE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/channels.h"
#include "agent/node_model.h"
#include "agent/state_file.h"
#include "agent/window_batcher.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"
#include "planner/layout.h"

namespace craft::agent {

class NodeState {
 public:
  struct Options {
    std::string node;
    std::vector<int> gpus;   // this node's global ranks
    ModelCheck model_check;  // the flags; 0 fields come from the planner
    absl::Duration window_flush_delay = absl::Milliseconds(200);
    size_t max_buffered_loads = 16;  // NodeLoads kept while the planner is away
    // Used when Prepare.timeout_ms is not positive.
    absl::Duration default_apply_timeout = absl::Seconds(60);

    absl::Status Validate() const;
  };

  // Cumulative counts since Create, plus a few current values (metrics).
  struct Stats {
    int64_t windows_received = 0;
    int64_t windows_rejected = 0;      // malformed or repeated: dropped
    int64_t windows_malformed = 0;     // of which: bad content
    int64_t windows_out_of_order = 0;  // of which: a window id not above the last
    // Per GPU of the node: token-to-expert assignments in accepted windows.
    std::map<int, int64_t> gpu_assignments;
    int64_t loads_sent = 0;
    int64_t loads_dropped = 0;  // oldest buffered loads dropped while disconnected
    int64_t acks_sent = 0;
    std::map<craft::v1::AckPhase, int64_t> acks_by_phase;
    int64_t nacks_sent = 0;
    std::map<craft::v1::ErrorCode, int64_t> nacks_by_code;
    int64_t planner_connects = 0;        // planner streams whose hello went out
    int64_t planner_disconnects = 0;     // planner streams that ended
    int64_t worker_resyncs_started = 0;  // workers brought to the committed layout
    int64_t worker_resyncs_done = 0;     // of which flipped to it
    int64_t worker_resyncs_failed = 0;   // attempts that failed or timed out
    // Current values.
    bool planner_connected = false;
    std::vector<int> attached_gpus;
  };

  // Loads what `store` saved. INVALID_ARGUMENT on bad options; the store's
  // error when it cannot be read. The pointers must outlive the NodeState.
  static absl::StatusOr<std::unique_ptr<NodeState>> Create(Options options, Clock* clock,
                                                           StateStore* store,
                                                           PlannerChannel* planner);

  // ---- Workers (the UDS stream adapters).
  // Errors: see WorkerRegistry::Attach; the caller ends the stream with it.
  absl::Status AttachWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  // A further WorkerHello on the attached stream `channel` (a worker with a
  // new weight-transfer group id, say): updates what the node announces, and
  // re-announces the node to the planner when that changed. Errors: see
  // WorkerRegistry::Update; the caller ends the stream with it.
  absl::Status UpdateWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel);
  // Idempotent; a no-op unless `gpu` is attached with `channel`.
  void DetachWorker(int gpu, WorkerChannel* channel);
  // Non-OK only when the stream must end (a window for another GPU); windows
  // with bad content are dropped and counted, the stream stays.
  absl::Status OnWorkerWindow(int gpu, const craft::v1::GpuWindow& window);
  // Statuses for another version or out of turn are logged and ignored.
  void OnWorkerStatus(int gpu, const craft::v1::WorkerStatus& status);
  bool AllWorkersAttached() const;

  // ---- Planner (the planner stream adapter).
  // The first message of every stream.
  craft::v1::AgentHello MakeHello() const;
  // The hello went out: buffered loads follow it.
  void OnPlannerConnected();
  void OnPlannerDisconnected();
  void OnPlannerMessage(const craft::v1::PlannerMessage& message);

  // ---- Time: apply deadlines and load flushes. Call every few milliseconds.
  void Poll();

  // ---- Observers.
  // What the node serves: the last version committed through this agent,
  // else the version every attached worker reports ("" when unknown).
  std::string committed_version() const;
  int64_t highest_epoch() const;
  bool apply_pending() const;
  // The shape workers are checked against; nullopt while not known (no
  // flags, nothing from the planner yet): no worker can attach then.
  std::optional<craft::v1::ModelShape> model() const;
  Stats stats() const;

 private:
  enum class Phase { kPreparing, kPrepared, kCommitting, kAborting };

  struct Apply {
    std::string version;
    std::string nonce;  // of the planner message the next answer is for
    Phase phase = Phase::kPreparing;
    absl::Duration timeout;
    absl::Time deadline;
    std::vector<int> gpus;                    // workers the prepare went to
    std::set<int> waiting;                    // still to answer in this phase
    std::set<int> missing;                    // commit: detached before flipping
    std::vector<craft::v1::GpuError> errors;  // commit: workers that failed
    craft::v1::Layout layout;                 // what the Prepare staged: persisted at Commit
  };

  // One worker being brought to the committed layout by the agent itself
  // (Reconcile): Prepare{committed, load_missing_from_checkpoint} until READY,
  // then Commit until FLIPPED.
  struct WorkerResync {
    bool flipping = false;  // READY came: the Commit went out
    absl::Time deadline;
  };

  NodeState(Options options, Clock* clock, StateStore* store, PlannerChannel* planner,
            AgentState persisted);

  void HandlePrepare(const std::string& nonce, const craft::v1::Prepare& received)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The full layout a Prepare's delta makes from the committed layout
  // (wire/layout_delta.h). FAILED_PRECONDITION when this node does not
  // hold the delta's base or the result's fingerprint differs (the planner
  // then sends the full layout), INVALID_ARGUMENT for a malformed delta.
  absl::StatusOr<craft::v1::Layout> LayoutFromDelta(const craft::v1::LayoutDelta& delta) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleCommit(const std::string& nonce, const craft::v1::Commit& commit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A Commit the planner re-drives for its committed version (`commit` names
  // no apply pending here, or the one committed already): records it
  // (write-ahead), brings every worker to it and answers once they all are.
  void HandleResync(const std::string& nonce, const craft::v1::Commit& commit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleAbort(const std::string& nonce, const std::string& version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The planner states the model shape: adopt it (persisted) unless it
  // contradicts the flags; end the streams of workers it no longer fits.
  void HandleWelcome(const craft::v1::Welcome& welcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidatePrepare(const craft::v1::Prepare& prepare) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `layout` parsed, when it fits this node and its model (every Prepare's
  // and every resync's layout).
  absl::StatusOr<planner::Layout> ParseNodeLayout(const craft::v1::Layout& layout) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records `version` with `layout` as the node's committed layout and
  // persists it, before any worker flips to it.
  void RecordCommitted(const std::string& version, const craft::v1::Layout& layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Brings every attached worker that serves another version than the
  // committed one to it (WorkerResync), unless a planner apply runs (it
  // reconciles when it closes) or the committed layout is unknown. Answers a
  // pending resync once no worker is left to bring. Called whenever that can
  // change: a worker attaches, flips or fails, an apply closes, a resync
  // Commit arrives, or Poll finds a retry due.
  void Reconcile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A worker's status for the committed version while it is resynchronised;
  // false when `gpu` is not being resynchronised to `status.version()`.
  bool OnResyncStatus(int gpu, const craft::v1::WorkerStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `gpu` flipped to `version`; `planner_hears` when the answer to a planner
  // Commit will tell it (then no re-announce is needed for it).
  void RecordFlip(int gpu, const std::string& version, bool planner_hears)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A worker resync failed or timed out: try it again after a pause.
  void RetryResyncLater(int gpu, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // DetachWorker's work, for `gpu` attached with `channel`.
  void DetachLocked(int gpu, WorkerChannel* channel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Detaches `gpu`'s worker and ends its stream with `status`.
  void EndWorker(int gpu, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Nacks the pending apply, tells its workers to drop the staging, closes it.
  void FailApply(craft::v1::ErrorCode code, const std::string& message,
                 std::vector<craft::v1::GpuError> errors) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forwards Abort to the pending apply's attached workers and closes it
  // without answering the planner.
  void AbortLocally(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishCommit(bool timed_out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishAbort() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseApply(bool aborted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartDeferredPrepare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records how `version` ended, for repeated or late Commit/Abort messages.
  void Remember(const std::string& version, bool aborted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Outcome of a recent version: nullopt when unknown, true when aborted.
  std::optional<bool> RecentOutcome(const std::string& version) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether the last hello told the planner what `gpu`'s worker says now.
  bool PlannerKnowsCurrent(int gpu) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-announces the node (a fresh hello on a new planner stream) when what
  // the planner was last told about `gpu` no longer holds. `why` is logged.
  void MaybeReannounce(int gpu, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendToWorkers(const std::vector<int>& gpus, const craft::v1::WorkerCommand& command)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendAck(const std::string& nonce, const std::string& version, craft::v1::AckPhase phase)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendNack(const std::string& nonce, const std::string& version, craft::v1::ErrorCode code,
                const std::string& message, std::vector<craft::v1::GpuError> errors = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLoads(std::vector<craft::v1::NodeLoad> loads) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Persist() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string CommittedVersionLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<int> AttachedOf(const std::vector<int>& gpus) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  StateStore* const store_;
  PlannerChannel* const planner_;

  mutable absl::Mutex mu_;
  NodeModel model_ ABSL_GUARDED_BY(mu_);
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);  // told model_.shape() on every change
  // Per GPU whose worker had sent a hello by then, what the last AgentHello
  // announced; set by MakeHello, which is logically const.
  mutable std::map<int, craft::v1::GpuInfo> advertised_ ABSL_GUARDED_BY(mu_);
  WindowBatcher batcher_ ABSL_GUARDED_BY(mu_);
  int64_t highest_epoch_ ABSL_GUARDED_BY(mu_);
  std::string committed_version_ ABSL_GUARDED_BY(mu_);  // "" = none through this agent
  // committed_version_'s layout, when known (persisted with it).
  std::optional<craft::v1::Layout> committed_layout_ ABSL_GUARDED_BY(mu_);
  // Workers being brought to the committed layout, by GPU.
  std::map<int, WorkerResync> resyncs_ ABSL_GUARDED_BY(mu_);
  // Workers whose resync failed: tried again from this time on.
  std::map<int, absl::Time> resync_retry_at_ ABSL_GUARDED_BY(mu_);
  // The nonce of a resync Commit the planner waits to have answered ("" none).
  std::string resync_nonce_ ABSL_GUARDED_BY(mu_);
  std::optional<Apply> apply_ ABSL_GUARDED_BY(mu_);
  // A Prepare that arrived while a commit ran (latest wins): nonce + body.
  std::optional<std::pair<std::string, craft::v1::Prepare>> deferred_prepare_ ABSL_GUARDED_BY(mu_);
  // Recently closed versions and whether they were aborted, newest last.
  std::deque<std::pair<std::string, bool>> recent_ ABSL_GUARDED_BY(mu_);
  bool planner_connected_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<craft::v1::NodeLoad> buffered_loads_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_NODE_STATE_H_
