#include "server/replan_stages.h"

namespace craft::server {
namespace {

constexpr absl::string_view kReplanStageNames[kNumReplanStages] = {"trace", "plan", "evaluate",
                                                                   "prepare"};

}  // namespace

absl::string_view ReplanStageName(ReplanStage stage) {
  return kReplanStageNames[static_cast<int>(stage)];
}

StageTimer::StageTimer(Clock* clock) : clock_(clock), last_(clock->Now()) {}

void StageTimer::Mark() { last_ = clock_->Now(); }

void StageTimer::Lap(ReplanStage stage) {
  const absl::Time now = clock_->Now();
  std::optional<absl::Duration>& duration = durations_[static_cast<int>(stage)];
  duration = duration.value_or(absl::ZeroDuration()) + (now - last_);
  last_ = now;
}

std::vector<StageTime> StageTimer::times() const {
  std::vector<StageTime> times;
  for (int i = 0; i < kNumReplanStages; ++i) {
    if (durations_[i].has_value()) times.push_back({ReplanStage(i), *durations_[i]});
  }
  return times;
}

}  // namespace craft::server
