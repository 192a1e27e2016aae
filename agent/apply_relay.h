// The node agent's side of the two-phase apply (proto/README.md), free of
// gRPC: epoch fencing, Prepare/Commit/Abort relayed from the planner to the
// node's workers and their answers gathered into one Ack or Nack, the node's
// committed version and what survives a restart (the state file), bringing
// workers that serve another version to it, and what the node tells the
// planner about itself (the hello). Loads take another way (LoadForwarder).
// Everything this class says goes out through PlannerChannel and
// WorkerChannel, and time comes from an injected Clock, so tests drive it
// with fakes and a FakeClock.
//
//   WorkerRegistry workers(gpus);
//   auto relay = ApplyRelay::Create(options, clock, &store, &planner_link, &workers);
//   (*relay)->AttachWorker(hello, &worker_stream);  // worker stream adapter
//   (*relay)->OnPlannerMessage(message);            // planner stream adapter
//   (*relay)->Poll();                               // every few ms: timeouts, retries
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
// Not thread-safe: NodeState owns it and guards it with its lock, so the
// channels are called with that lock held (see channels.h). State-file writes
// (rare: a new epoch, a commit, the planner's model) happen under it too.
#ifndef CRAFT_AGENT_APPLY_RELAY_H_
#define CRAFT_AGENT_APPLY_RELAY_H_

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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/channels.h"
#include "agent/node_model.h"
#include "agent/state_file.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"
#include "planner/layout.h"

namespace craft::agent {

class ApplyRelay {
 public:
  struct Options {
    std::string node;
    ModelCheck model_check;  // the flags; 0 fields come from the planner
    // Used when Prepare.timeout_ms is not positive.
    absl::Duration default_apply_timeout = absl::Seconds(60);

    absl::Status Validate() const;
  };

  // Cumulative counts since Create (metrics).
  struct Stats {
    int64_t acks_sent = 0;
    std::map<craft::v1::AckPhase, int64_t> acks_by_phase;
    int64_t nacks_sent = 0;
    std::map<craft::v1::ErrorCode, int64_t> nacks_by_code;
    int64_t planner_connects = 0;        // planner streams whose hello went out
    int64_t planner_disconnects = 0;     // planner streams that ended
    int64_t worker_resyncs_started = 0;  // workers brought to the committed layout
    int64_t worker_resyncs_done = 0;     // of which flipped to it
    int64_t worker_resyncs_failed = 0;   // attempts that failed or timed out
  };

  // Loads what `store` saved. `workers` holds the node's GPUs and is told
  // who attaches, what each serves and the node's model. INVALID_ARGUMENT on
  // bad options; the store's error when it cannot be read. The pointers must
  // outlive the ApplyRelay.
  static absl::StatusOr<std::unique_ptr<ApplyRelay>> Create(Options options, Clock* clock,
                                                            StateStore* store,
                                                            PlannerChannel* planner,
                                                            WorkerRegistry* workers);

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
  // Statuses for another version or out of turn are logged and ignored.
  void OnWorkerStatus(int gpu, const craft::v1::WorkerStatus& status);

  // ---- Planner (the planner stream adapter).
  // The first message of every stream.
  craft::v1::AgentHello MakeHello() const;
  // The hello went out: changes since it are re-announced from now on.
  void OnPlannerConnected();
  void OnPlannerDisconnected();
  void OnPlannerMessage(const craft::v1::PlannerMessage& message);

  // ---- Time: apply deadlines and resync retries. Call every few milliseconds.
  void Poll();

  // ---- Observers.
  // What the node serves: the last version committed through this agent,
  // else the version every attached worker reports ("" when unknown).
  std::string committed_version() const;
  int64_t highest_epoch() const { return highest_epoch_; }
  bool apply_pending() const { return apply_.has_value(); }
  // A planner stream is up: its hello went out and it has not ended.
  bool planner_connected() const { return planner_connected_; }
  // The shape workers are checked against; nullopt while not known (no
  // flags, nothing from the planner yet): no worker can attach then.
  const std::optional<craft::v1::ModelShape>& model() const { return workers_->model(); }
  const Stats& stats() const { return stats_; }

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

  ApplyRelay(Options options, Clock* clock, StateStore* store, PlannerChannel* planner,
             WorkerRegistry* workers, AgentState persisted);

  void HandlePrepare(const std::string& nonce, const craft::v1::Prepare& received);
  // The full layout a Prepare's delta makes from the committed layout
  // (wire/layout_delta.h). FAILED_PRECONDITION when this node does not
  // hold the delta's base or the result's fingerprint differs (the planner
  // then sends the full layout), INVALID_ARGUMENT for a malformed delta.
  absl::StatusOr<craft::v1::Layout> LayoutFromDelta(const craft::v1::LayoutDelta& delta) const;
  void HandleCommit(const std::string& nonce, const craft::v1::Commit& commit);
  // A Commit the planner re-drives for its committed version (`commit` names
  // no apply pending here, or the one committed already): records it
  // (write-ahead), brings every worker to it and answers once they all are.
  void HandleResync(const std::string& nonce, const craft::v1::Commit& commit);
  void HandleAbort(const std::string& nonce, const std::string& version);
  // The planner states the model shape: adopt it (persisted) unless it
  // contradicts the flags; end the streams of workers it no longer fits.
  void HandleWelcome(const craft::v1::Welcome& welcome);
  absl::Status ValidatePrepare(const craft::v1::Prepare& prepare) const;
  // `layout` parsed, when it fits this node and its model (every Prepare's
  // and every resync's layout).
  absl::StatusOr<planner::Layout> ParseNodeLayout(const craft::v1::Layout& layout) const;
  // Records `version` with `layout` as the node's committed layout and
  // persists it, before any worker flips to it.
  void RecordCommitted(const std::string& version, const craft::v1::Layout& layout);

  // Brings every attached worker that serves another version than the
  // committed one to it (WorkerResync), unless a planner apply runs (it
  // reconciles when it closes) or the committed layout is unknown. Answers a
  // pending resync once no worker is left to bring. Called whenever that can
  // change: a worker attaches, flips or fails, an apply closes, a resync
  // Commit arrives, or Poll finds a retry due.
  void Reconcile();
  // A worker's status for the committed version while it is resynchronised;
  // false when `gpu` is not being resynchronised to `status.version()`.
  bool OnResyncStatus(int gpu, const craft::v1::WorkerStatus& status);
  // `gpu` flipped to `version`; `planner_hears` when the answer to a planner
  // Commit will tell it (then no re-announce is needed for it).
  void RecordFlip(int gpu, const std::string& version, bool planner_hears);
  // A worker resync failed or timed out: try it again after a pause.
  void RetryResyncLater(int gpu, const std::string& why);

  // Detaches `gpu`'s worker and ends its stream with `status`.
  void EndWorker(int gpu, const absl::Status& status);

  // Nacks the pending apply, tells its workers to drop the staging, closes it.
  void FailApply(craft::v1::ErrorCode code, const std::string& message,
                 std::vector<craft::v1::GpuError> errors);
  // Forwards Abort to the pending apply's attached workers and closes it
  // without answering the planner.
  void AbortLocally(const std::string& reason);
  void MaybeFinishCommit(bool timed_out);
  void MaybeFinishAbort();
  void CloseApply(bool aborted);
  void StartDeferredPrepare();
  // Records how `version` ended, for repeated or late Commit/Abort messages.
  void Remember(const std::string& version, bool aborted);
  // Outcome of a recent version: nullopt when unknown, true when aborted.
  std::optional<bool> RecentOutcome(const std::string& version) const;

  // Whether the last hello told the planner what `gpu`'s worker says now.
  bool PlannerKnowsCurrent(int gpu) const;
  // Re-announces the node (a fresh hello on a new planner stream) when what
  // the planner was last told about `gpu` no longer holds. `why` is logged.
  void MaybeReannounce(int gpu, const std::string& why);
  void SendToWorkers(const std::vector<int>& gpus, const craft::v1::WorkerCommand& command);
  void SendAck(const std::string& nonce, const std::string& version, craft::v1::AckPhase phase);
  void SendNack(const std::string& nonce, const std::string& version, craft::v1::ErrorCode code,
                const std::string& message, std::vector<craft::v1::GpuError> errors = {});
  void Persist();
  std::vector<int> AttachedOf(const std::vector<int>& gpus) const;

  const Options options_;
  Clock* const clock_;
  StateStore* const store_;
  PlannerChannel* const planner_;
  WorkerRegistry* const workers_;  // told model_.shape() on every change

  NodeModel model_;
  // Per GPU whose worker had sent a hello by then, what the last AgentHello
  // announced; set by MakeHello, which is logically const.
  mutable std::map<int, craft::v1::GpuInfo> advertised_;
  int64_t highest_epoch_;
  std::string committed_version_;  // "" = none through this agent
  // committed_version_'s layout, when known (persisted with it).
  std::optional<craft::v1::Layout> committed_layout_;
  // Workers being brought to the committed layout, by GPU.
  std::map<int, WorkerResync> resyncs_;
  // Workers whose resync failed: tried again from this time on.
  std::map<int, absl::Time> resync_retry_at_;
  // The nonce of a resync Commit the planner waits to have answered ("" none).
  std::string resync_nonce_;
  std::optional<Apply> apply_;
  // A Prepare that arrived while a commit ran (latest wins): nonce + body.
  std::optional<std::pair<std::string, craft::v1::Prepare>> deferred_prepare_;
  // Recently closed versions and whether they were aborted, newest last.
  std::deque<std::pair<std::string, bool>> recent_;
  bool planner_connected_ = false;
  Stats stats_;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_APPLY_RELAY_H_
