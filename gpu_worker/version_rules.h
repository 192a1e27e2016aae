// The worker's version rules: which layout version serves, which one is
// staged or staging, and what each command of the agent's two-phase apply
// (proto/README.md) may change. No threads, no I/O, no clock: the Worker
// stages, drives the store, answers the agent and flips at window boundaries
// as these decisions say, so every rule is tested with plain calls.
//
//   VersionRules rules(LayoutState::Of(initial, "0.0", gpu));
//   rules.OnArrival(command);                       // in arrival order
//   absl::StatusOr<VersionRules::Claim> claim = rules.ClaimStaging(prepare);
//   ... stage ...; rules.EndStaging(staged);        // READY or FAILED
//   rules.Commit(version);  rules.TakePendingFlip();  rules.FinishFlip(ok);
//
// Rules (every answer is a WorkerStatus for the command's version):
//  - Prepare V: READY{bytes_received, staging_ms} or FAILED{error}. V already
//    serving, or already staged: READY again without copying. A Prepare for
//    another version than the one staging cancels that staging (latest wins,
//    no answer for the cancelled one); one arriving while a commit waits for
//    its boundary waits for the flip.
//  - Commit V: V staged -> flip at the next boundary, then FLIPPED; V already
//    serving -> FLIPPED at once; anything else -> FAILED.
//  - Abort V: V staged or staging -> dropped, DROPPED; V prepared before but
//    no longer staged (it failed, was cancelled or replaced) -> DROPPED;
//    V serving, V committed but not yet flipped, or never prepared -> FAILED.
//  - Staging survives an agent reconnect, so a Commit that arrives on the
//    next stream still applies.
//  - A Prepare with load_missing_from_checkpoint is the agent bringing this
//    worker to the node's committed version (it restarted, or missed a
//    flip): from its arrival until a flip no window is served, because this
//    worker's layout is not the one every other rank routes with.
//
// Not thread-safe: the Worker guards it with its lock.
#ifndef CRAFT_GPU_WORKER_VERSION_RULES_H_
#define CRAFT_GPU_WORKER_VERSION_RULES_H_

#include <deque>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"
#include "gpu_worker/layout_state.h"
#include "gpu_worker/stager.h"

namespace craft::gpu_worker {

class VersionRules {
 public:
  // A version staged in the store and waiting for Commit or Abort.
  struct Staged {
    LayoutState state;
    StageResult result;
  };

  explicit VersionRules(LayoutState serving);

  // ---- A command arrives (from the agent stream, before it is queued).
  struct Arrival {
    // A newer Prepare, or an Abort of the version staging: stop that staging.
    bool cancel_staging = false;
    // An agent resync of a worker on another version: windows are held from
    // now until a flip.
    bool hold_windows = false;
  };
  Arrival OnArrival(const craft::v1::WorkerCommand& command);

  // ---- Prepare V, in command order.
  // A committed version waits for its flip: a Prepare waits until it is done
  // and stages on top of it.
  bool flip_pending() const { return !pending_flip_.empty(); }
  struct Claim {
    // READY at once with this (V serves, or is staged already); nullopt: V
    // is staging now and the caller stages it.
    std::optional<StageResult> ready;
    // A staged version V replaces: the caller drops its staging ("" none).
    std::string replaced;
  };
  // INVALID_ARGUMENT (answer FAILED) for a Prepare without a version, or of
  // the serving version with another layout.
  absl::StatusOr<Claim> ClaimStaging(const craft::v1::Prepare& prepare);
  // The staging claimed last is over: `kept` when it staged and was not
  // cancelled (it waits for Commit or Abort then), nullopt otherwise.
  void EndStaging(std::optional<Staged> kept);

  // ---- Commit V.
  enum class CommitAction {
    kAlreadyFlipping,  // a repeat: FLIPPED follows the flip
    kServing,          // FLIPPED at once
    kFlipAtBoundary,   // V flips at the next window boundary, then FLIPPED
  };
  // FAILED_PRECONDITION (answer FAILED) when V is neither staged nor serving.
  absl::StatusOr<CommitAction> Commit(const std::string& version);

  // ---- Abort V.
  enum class AbortAction {
    kDropStaged,     // V was staged: the caller drops its staging, DROPPED
    kNothingToDrop,  // V was prepared but is no longer staged: DROPPED
  };
  // FAILED_PRECONDITION (answer FAILED) when V is committed, serving or was
  // never prepared here.
  absl::StatusOr<AbortAction> Abort(const std::string& version);

  // ---- At a window boundary.
  // The committed version to flip to now ("" none); it stays staged until
  // FinishFlip. Crashes if it is not the staged one (a bug: Commit marks
  // only the staged version, and nothing replaces staging before the flip).
  std::string TakePendingFlip();
  // The store flipped to the version TakePendingFlip named (`flipped`) or
  // could not; its staging is gone either way. True when windows were held
  // for a resync and are served again.
  bool FinishFlip(bool flipped);

  // ---- Observers.
  const LayoutState& serving() const { return serving_; }
  // nullptr when nothing is staged.
  const Staged* staged() const { return staged_ ? &*staged_ : nullptr; }
  // True while an agent resync runs: windows are neither served nor reported.
  bool holding_windows() const { return !held_for_.empty(); }
  // The version a resync holds windows for ("" none).
  const std::string& held_for() const { return held_for_; }

 private:
  void Remember(const std::string& version);
  bool Known(const std::string& version) const;

  LayoutState serving_;
  std::optional<Staged> staged_;
  std::string staging_;       // version being staged, "" if none
  std::string pending_flip_;  // committed, flips at the next boundary
  // The version the agent resyncs this worker to: until a flip, the serving
  // version is not the node's, so no window is served ("" = serving).
  std::string held_for_;
  std::deque<std::string> prepared_;  // recent Prepare versions
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_VERSION_RULES_H_
