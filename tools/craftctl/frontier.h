// craftctl's side of the incremental planner: the movement-limit flags and
// the frontier printed by `eval --previous`.
#ifndef CRAFT_TOOLS_CRAFTCTL_FRONTIER_H_
#define CRAFT_TOOLS_CRAFTCTL_FRONTIER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "planner/layout.h"
#include "planner/load_trace.h"
#include "planner/plan.h"
#include "planner/transfer/incremental.h"

namespace craft::ctl {

// --max_moved_fraction F (in [0, 1]) and --max_moved_gb G (>= 0, the largest
// arrival into one GPU); nullopt when neither is given. INVALID_ARGUMENT for
// values out of range.
absl::StatusOr<std::optional<planner::MoveLimit>> MoveLimitFromFlags();

// The incremental planner's options from the plan flags: R from --budget
// (auto is refused: the incremental planner keeps a fixed R) and the expert
// size from --expert_mb.
absl::StatusOr<planner::IncrementalOptions> IncrementalOptionsFor(
    const planner::PlanOptions& options, const planner::MoveLimit& limit);

// The frontier's points every `step` of moved fraction (the last point within
// each multiple of it, plus the first and the last point), replayed on
// `heldout` too. As a table, CSV or JSON.
struct FrontierReport {
  std::string table;
  std::string csv;
  nlohmann::json json;
};
absl::StatusOr<FrontierReport> ReportFrontier(const planner::Layout& previous,
                                              const planner::IncrementalPlan& plan,
                                              const planner::LoadTrace& heldout, double step);

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_FRONTIER_H_
