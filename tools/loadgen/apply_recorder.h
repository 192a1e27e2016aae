// The two-phase applies as the fake agents see them: per version, when the
// first and last agent received Prepare and Commit. An apply's
// prepare-to-commit latency runs from the first agent's Prepare to the last
// agent's Commit, i.e. the whole apply as the planner drives it (the stage
// delay of the fake agents included).
//
//   ApplyRecorder recorder(/*num_agents=*/512);
//   recorder.Prepared("3.1", bytes);   // from the agents' stream reactions
//   recorder.Committed("3.1");
//   ApplySummary summary = recorder.Summarize();
//
// Thread-safety: thread-safe.
#ifndef CRAFT_TOOLS_LOADGEN_APPLY_RECORDER_H_
#define CRAFT_TOOLS_LOADGEN_APPLY_RECORDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace craft::loadgen {

struct ApplySummary {
  int prepared = 0;    // versions some agent received a Prepare for
  int committed = 0;   // versions every agent received a Commit for
  int aborted = 0;     // versions some agent received an Abort for
  int unfinished = 0;  // neither (still in progress when summarised)
  // Per committed apply, in version order of completion, milliseconds:
  std::vector<double> prepare_to_commit_ms;  // first Prepare -> last Commit
  std::vector<double> prepare_fanout_ms;     // first Prepare -> last Prepare
  std::vector<double> commit_fanout_ms;      // first Commit -> last Commit
  int64_t max_prepare_bytes = 0;             // the largest Prepare one agent received

  // Adds another recorder's applies (another placement group's).
  void Add(const ApplySummary& other);
};

// The `q`-quantile (0..1) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double q);

class ApplyRecorder {
 public:
  explicit ApplyRecorder(int num_agents) : num_agents_(num_agents) {}

  // An agent received the Prepare of `version`, `bytes` long.
  void Prepared(const std::string& version, int64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void Committed(const std::string& version) ABSL_LOCKS_EXCLUDED(mu_);
  void Aborted(const std::string& version) ABSL_LOCKS_EXCLUDED(mu_);

  // Some apply is neither committed on every agent nor aborted.
  bool InProgress() const ABSL_LOCKS_EXCLUDED(mu_);
  // Drops every finished apply: what follows is summarised on its own.
  void ForgetFinished() ABSL_LOCKS_EXCLUDED(mu_);
  ApplySummary Summarize() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Apply {
    int prepares = 0;
    int commits = 0;
    bool aborted = false;
    int64_t max_bytes = 0;
    absl::Time first_prepare, last_prepare, first_commit, last_commit;
  };
  bool Finished(const Apply& apply) const { return apply.aborted || apply.commits >= num_agents_; }

  const int num_agents_;
  mutable absl::Mutex mu_;
  std::map<std::string, Apply> applies_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_APPLY_RECORDER_H_
