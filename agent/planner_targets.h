// Where the agent's planner stream goes next (proto/README.md, "High
// availability"): the configured addresses in turn (one planner, or every
// replica of a highly available group), and the leader a follower named when
// it refused the stream. A follower's redirect is followed at once, at most
// kMaxRedirectsInRow times in a row (a stale view could bounce the agent
// between followers). When the named leader cannot be reached (it just died
// and the follower does not know yet), the follower is asked again soon
// (kSoon: a short fixed delay, at most kMaxQuickRetries times before the
// backoff applies), so that agents find a new leader within moments of its
// election; so is a follower that knows no leader yet. After any other
// failure the next configured address is tried after the usual backoff.
//
//   PlannerTargets targets("planner-0:50051,planner-1:50051");
//   const std::string target = targets.Current();
//   ... stream ends ...
//   PlannerTargets::Next when = targets.OnStreamEnded(leader_from_trailers, healthy);
//
// Thread-compatible (the agent's link thread owns it).
#ifndef CRAFT_AGENT_PLANNER_TARGETS_H_
#define CRAFT_AGENT_PLANNER_TARGETS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace craft::agent {

class PlannerTargets {
 public:
  static constexpr int kMaxRedirectsInRow = 3;
  static constexpr int kMaxQuickRetries = 50;

  enum class Next { kAtOnce, kSoon, kBackoff };

  // Comma-separated host:port list; empty entries are skipped.
  explicit PlannerTargets(absl::string_view list);

  // The address the next stream goes to.
  const std::string& Current() const;
  // A stream to Current() ended. `leader` is what a follower said in its
  // refusal: the leader's address, or "" while it knows none (nullopt: no
  // follower answered); `healthy` whether the planner sent anything on it.
  // Says when to connect to Current() next.
  Next OnStreamEnded(const std::optional<std::string>& leader, bool healthy);

  const std::vector<std::string>& configured() const { return configured_; }

 private:
  Next QuickRetryOrBackoff();

  std::vector<std::string> configured_;
  size_t next_ = 0;
  std::string redirect_;  // "" when not following one
  int redirects_in_row_ = 0;
  int quick_retries_ = 0;  // since the last healthy stream
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_PLANNER_TARGETS_H_
