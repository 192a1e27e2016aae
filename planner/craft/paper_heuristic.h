// The CRAFT paper's released per-layer heuristic, kept for parity with the
// authors' artifact (it is not the knapsack the paper describes).
#ifndef CRAFT_PLANNER_CRAFT_PAPER_HEURISTIC_H_
#define CRAFT_PLANNER_CRAFT_PAPER_HEURISTIC_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/craft/rounding.h"
#include "planner/load_trace.h"
#include "planner/plan_types.h"

namespace craft::planner {

// The artifact's candidate counts: {0, 4, 8, 16, 32}.
const std::vector<int>& PaperCandidates();

// Per-layer threshold rule over curves measured at PaperCandidates(): with
// b(r, l) = (bal_r - bal_0) / r and t = mean of b over r in {4, 8, 16, 32} and
// all layers, a layer takes the r whose b >= t (largest such r wins, and may
// be 32), else among r <= 16 the last r with b >= t/2 or a new running
// maximum of b (the artifact never updates that maximum on the first branch,
// so "medium" layers tend to 8). Layers whose benefit is never positive get 0.
std::vector<int> SelectPaperReplicas(const std::vector<BenefitCurve>& curves);

// RoundFinalAlloc (planner/craft/rounding.h) pads the selection.

// Curves at PaperCandidates(), the threshold rule, the rounding, then
// BuildLayout. The budget R is an output, not an input.
absl::StatusOr<PlanResult> PlanCraftPaper(const LoadTrace& trace, const PlanOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_PAPER_HEURISTIC_H_
