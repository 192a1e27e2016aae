// The stages of one re-plan, and a timer for them on an injected clock, so
// the loop's outcome, craft_planner_replan_stage_seconds and the Replan RPC
// say where a re-plan spends its time.
//
//   StageTimer timer(clock);
//   timer.Mark();                        // the trace starts
//   const planner::LoadTrace trace = load_store->Trace();
//   timer.Lap(ReplanStage::kTrace);
//   ...
//   for (const StageTime& t : timer.times()) Report(ReplanStageName(t.stage), t.duration);
//
// Thread-safety: a StageTimer belongs to one thread (the replan loop's).
#ifndef CRAFT_SERVER_REPLAN_STAGES_H_
#define CRAFT_SERVER_REPLAN_STAGES_H_

#include <array>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace craft::server {

// In the order a re-plan runs them. The names are the `stage` label of
// craft_planner_replan_stage_seconds and ReplanResponse.stage_times.
enum class ReplanStage {
  kTrace,     // the load store's trace snapshot
  kPlan,      // planner::Plan or planner::PlanIncremental
  kEvaluate,  // what the method does after planning: stabilise, evaluate, gate,
              // transfer plan or frontier choice and the step within the headroom
  kPrepare,   // starting the apply (ApplyCoordinator::StartApply: the Prepares)
};
inline constexpr int kNumReplanStages = 4;
absl::string_view ReplanStageName(ReplanStage stage);

struct StageTime {
  ReplanStage stage;
  absl::Duration duration;
};

class StageTimer {
 public:
  // Starts timing now. `clock` must outlive the timer.
  explicit StageTimer(Clock* clock);

  // Starts the next stage now: the time since the last Mark or Lap counts
  // towards no stage.
  void Mark();
  // Adds the time since the last Mark or Lap to `stage` (a stage may run in
  // pieces, as the incremental method's evaluation does) and starts the next.
  void Lap(ReplanStage stage);

  // The stages lapped at least once, in stage order.
  std::vector<StageTime> times() const;

 private:
  Clock* const clock_;
  absl::Time last_;
  std::array<std::optional<absl::Duration>, kNumReplanStages> durations_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_REPLAN_STAGES_H_
