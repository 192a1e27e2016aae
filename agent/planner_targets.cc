#include "agent/planner_targets.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace craft::agent {

PlannerTargets::PlannerTargets(absl::string_view list) {
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    configured_.emplace_back(absl::StripAsciiWhitespace(part));
  }
  if (configured_.empty()) configured_.emplace_back();  // the caller validated the flag
}

const std::string& PlannerTargets::Current() const {
  return redirect_.empty() ? configured_[next_] : redirect_;
}

PlannerTargets::Next PlannerTargets::OnStreamEnded(const std::optional<std::string>& named,
                                                   bool healthy) {
  const std::string leader = named.value_or("");
  if (healthy) {
    // The planner served us: try it again first (a restarted single planner
    // comes back where it was; a deposed leader names its successor).
    redirects_in_row_ = 0;
    quick_retries_ = 0;
    if (!leader.empty() && leader != Current()) {
      redirect_ = leader;
      ++redirects_in_row_;
      return Next::kAtOnce;
    }
    return Next::kBackoff;
  }
  if (!leader.empty() && leader != Current() && redirects_in_row_ < kMaxRedirectsInRow) {
    redirect_ = leader;
    ++redirects_in_row_;
    return Next::kAtOnce;
  }
  redirects_in_row_ = 0;
  if (named.has_value() && leader.empty() && redirect_.empty()) {
    // A follower that knows no leader yet (an election is under way).
    return QuickRetryOrBackoff();
  }
  if (!redirect_.empty()) {
    // The leader a follower named is unreachable: ask that follower again
    // soon; it names the new leader once one is elected.
    redirect_.clear();
    return QuickRetryOrBackoff();
  }
  // Unreachable, or refused without a leader to go to: the next configured
  // address, after the backoff.
  next_ = (next_ + 1) % configured_.size();
  return Next::kBackoff;
}

PlannerTargets::Next PlannerTargets::QuickRetryOrBackoff() {
  if (quick_retries_ >= kMaxQuickRetries) return Next::kBackoff;
  ++quick_retries_;
  return Next::kSoon;
}

}  // namespace craft::agent
