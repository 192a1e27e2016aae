// The workloads the evaluation plans and replays: synthetic traces shaped like
// the CRAFT paper's models (with per-window samples and drift), and recorded
// aggregate counts when a trace directory is given.
#ifndef CRAFT_TOOLS_EVALUATE_WORKLOADS_H_
#define CRAFT_TOOLS_EVALUATE_WORKLOADS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/load_trace.h"
#include "tools/evaluate/scale.h"

namespace craft::evaluate {

struct Workload {
  std::string key;          // e.g. "deepseek-high", "qwen3-235b"
  std::string model;        // e.g. "DeepSeek-R1"
  std::string description;  // the profile, or where the counts come from
  std::string profile;      // the skew profile's key, or "recorded"
  // Synthetic traces plan on the first half of their windows and are replayed
  // on the second half; recorded traces are one aggregate, planned and
  // replayed on the same counts.
  bool synthetic = false;
  std::vector<int> gpu_counts;
  double non_expert_bytes = 0;  // synthetic only: the KV model's fixed weights
  planner::LoadTrace trace;     // every window
  planner::LoadTrace plan;      // what planners see
  planner::LoadTrace eval;      // what layouts are replayed on

  int num_layers() const { return trace.num_layers(); }
  int num_experts() const { return trace.num_experts(); }
};

// One workload per model and skew profile of `config`, in that order.
absl::StatusOr<std::vector<Workload>> SyntheticWorkloads(const ScaleConfig& config);

// The recorded traces of `config` found in `dir`; files that do not exist are
// named in `skipped` and left out. An unreadable or malformed file is an
// error. GPU counts that would leave fewer than two experts per GPU or do not
// divide the experts are dropped.
absl::StatusOr<std::vector<Workload>> RealWorkloads(const ScaleConfig& config,
                                                    const std::string& dir,
                                                    std::vector<std::string>& skipped);

// Per layer, the hottest expert's share over the mean in `trace`'s aggregate.
std::vector<double> HotRatios(const planner::LoadTrace& trace);

}  // namespace craft::evaluate

#endif  // CRAFT_TOOLS_EVALUATE_WORKLOADS_H_
