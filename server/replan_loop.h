// The planner's background thread: every `replan_interval` (or when
// triggered) it re-plans on the load store's trace, stabilises the plan
// against the committed layout, gates it on modelled gain versus transfer
// cost, and hands what passes to the ApplyCoordinator. The same thread checks
// apply timeouts and runs posted jobs (RPCs whose work must not block a gRPC
// thread: Replan, Plan dry runs), so planning never runs on a gRPC thread.
//
// The gate (docs/design.md §3, step 10), on the same recent windows:
//   gain       = 1 - step_time(new) / step_time(committed)     (EvaluateLayout)
//   transfer_s = max bytes one GPU receives / (transfer_gbps * 1e9 / 8)
//   push when gain > gain_threshold and horizon_s * gain > transfer_s,
//   or when forced. Nodes not on the committed version are the
//   coordinator's to resynchronise (never gated); the loop plans nothing
//   until they are back.
//
//   ReplanLoop loop(config, &load_store, coordinator.get(), clock);
//   loop.Start();
//   loop.Trigger();                      // re-plan now
//   ReplanOutcome o = loop.RunOnce(true);  // only on the loop thread or in tests
//   loop.Stop();
//
// Thread-safety: Start, Stop, Trigger, Post and LastExplain are thread-safe.
// RunOnce runs planning inline and must only be called by one thread at a
// time (the loop thread, or a test that has not started the loop).
#ifndef CRAFT_SERVER_REPLAN_LOOP_H_
#define CRAFT_SERVER_REPLAN_LOOP_H_

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "craft/v1/placement.pb.h"
#include "planner/transfer/incremental.h"
#include "server/apply_coordinator.h"
#include "server/config.h"
#include "server/load_store.h"
#include "server/replan_stages.h"

namespace craft::server {

// What a replan did (the `result` label of craft_planner_replans_total).
enum class ReplanResult {
  kPushed,   // a new layout passed the gate (or was forced); its apply started
  kGated,    // the new layout did not pass the gate: nothing to push
  kNoLoads,  // no complete load window yet
  kSkipped,  // an apply or a resync in progress, GPUs without an agent, or fenced
  kFailed,   // planning or evaluation failed, or the apply could not start
};
inline constexpr int kNumReplanResults = 5;
absl::string_view ReplanResultName(ReplanResult result);

struct ReplanOutcome {
  std::string decision;  // one line: what was decided and why
  std::string version;   // the version being applied; "" when nothing was pushed
  ReplanResult result = ReplanResult::kSkipped;
  // The stages this replan ran, in order, timed on the loop's clock (none
  // when it was skipped before taking the trace).
  std::vector<StageTime> stage_times;
  // Set when a plan was computed: per layer the balancedness of the
  // committed layout and of the new one, both replayed on the planning
  // windows.
  std::vector<double> balancedness_before;
  std::vector<double> balancedness_after;
};

class ReplanLoop {
 public:
  // A unit of work for the loop thread. `run` is false when the loop stops
  // before running it: the job must then only release what it holds (e.g.
  // finish its RPC with UNAVAILABLE).
  using Job = std::function<void(bool run)>;
  static constexpr int kMaxQueuedJobs = 16;

  // Called on the loop thread after every RunOnce; must not block.
  using Observer = std::function<void(const ReplanOutcome&)>;

  // The pointers must outlive the loop.
  ReplanLoop(const PlannerConfig& config, LoadStore* load_store, ApplyCoordinator* coordinator,
             Clock* clock, Observer observer = nullptr);
  ~ReplanLoop();  // Stop()s

  // Plans on the windows of `peers` too (the other groups of this group's
  // statistics family: config.h, PlacementGroup). Before Start; the stores
  // must outlive the loop.
  void PoolWith(std::vector<const LoadStore*> peers);

  void Start();
  // Stops the thread after the current step; queued jobs get run = false.
  // Idempotent.
  void Stop();
  // Re-plan at the next opportunity, without waiting for the interval.
  void Trigger();
  // Looks at the coordinator's deadlines again (they moved earlier) without
  // re-planning.
  void Wake();
  // Queues `job` for the loop thread. False (and the job is not kept) when
  // the queue is full or the loop is stopped.
  bool Post(Job job);

  // Plans, gates and maybe starts an apply; records the decision for Explain.
  ReplanOutcome RunOnce(bool force);

  // The last replan's per-layer plan and decision (empty before the first).
  craft::v1::ExplainResponse LastExplain() const;

  // A multi-step move is under way: RunOnce continues it as soon as the
  // previous step's apply is over. Loop thread (or a test driving RunOnce).
  bool Continuing() const;

 private:
  // The incremental method's way to a frontier point, when it takes more
  // than one apply (the workers' staging headroom is smaller than the move).
  struct Continuation {
    std::shared_ptr<const planner::Layout> base;  // the committed layout planned from
    planner::IncrementalPlan plan;
    int target = 0;       // the frontier point chosen
    int reached = 0;      // where the last step goes
    int step = 0;         // steps started
    std::string version;  // the version the last step is applied as
  };

  // RunOnce without the bookkeeping: fills `explain` and decides, lapping
  // each stage it runs on `stages`.
  ReplanOutcome Decide(bool force, StageTimer* stages, craft::v1::ExplainResponse* explain);
  // Method fresh: a new plan, stabilised, through the gain gate.
  ReplanOutcome DecideFresh(bool force, const planner::LoadTrace& trace,
                            const CommittedLayout& committed, StageTimer* stages,
                            craft::v1::ExplainResponse* explain);
  // Method incremental: the frontier point with the best net benefit, then
  // its first step (NextStep).
  ReplanOutcome DecideIncremental(bool force, const planner::LoadTrace& trace,
                                  const CommittedLayout& committed, StageTimer* stages,
                                  craft::v1::ExplainResponse* explain);
  // Applies the furthest point of continuation_ that fits the staging
  // headroom; clears continuation_ when it reaches the target or fails.
  ReplanOutcome NextStep(const std::string& what, const planner::LoadTrace& trace,
                         StageTimer* stages, craft::v1::ExplainResponse* explain);
  // Bytes one step may bring into a GPU: the least headroom a worker reports,
  // capped by replan.max_step_gb; nullopt when neither limits it.
  std::optional<int64_t> StepLimit() const;
  // Starts the apply of `layout`, describing it as `what`; `result` when it
  // starts, kFailed when it cannot.
  ReplanOutcome Apply(const planner::Layout& layout, const std::string& what, ReplanResult result,
                      StageTimer* stages);
  void Run();

  const PlannerConfig config_;
  LoadStore* const load_store_;
  std::vector<const LoadStore*> peers_;  // set before Start
  ApplyCoordinator* const coordinator_;
  Clock* const clock_;
  const Observer observer_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;       // interrupts the sleep
  bool triggered_ ABSL_GUARDED_BY(mu_) = false;  // replan now
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // written by Start, joined by Stop (both on the owner's thread)
  // A multi-step move in progress. Only the thread that runs RunOnce (the
  // loop thread) touches it.
  std::optional<Continuation> continuation_;

  mutable absl::Mutex explain_mu_;
  craft::v1::ExplainResponse last_explain_ ABSL_GUARDED_BY(explain_mu_);
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_REPLAN_LOOP_H_
