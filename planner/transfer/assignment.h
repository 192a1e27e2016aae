// Square min-cost assignment (the linear assignment problem) over integer
// costs, used to relabel interchangeable GPU bins so that a re-plan moves as
// few expert weights as possible.
//
//   // Row i is a bin, column j a GPU; cost[i][j] = weights to fetch.
//   absl::StatusOr<std::vector<int>> column_of_row = SolveAssignment(cost);
//
// Thread-safety: a pure function; safe to call concurrently.
#ifndef CRAFT_PLANNER_TRANSFER_ASSIGNMENT_H_
#define CRAFT_PLANNER_TRANSFER_ASSIGNMENT_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"

namespace craft::planner {

// The largest |cost| SolveAssignment accepts. The bound keeps every reduced
// cost and dual potential of the solver inside int64_t.
inline constexpr int64_t kMaxAssignmentCost = std::numeric_limits<int64_t>::max() / 8;

// Returns, for each row of the n x n matrix `cost`, the column assigned to it,
// so that the columns form a permutation with the least total cost.
//
// Shortest augmenting paths with dual potentials (Hungarian method in the
// Jonker-Volgenant formulation), O(n^3) time and O(n) extra memory beyond the
// input. Deterministic: the same matrix always gives the same permutation.
// Among equally cheap optima the one found is unspecified but fixed; an
// all-equal matrix gives the identity.
//
// Fails with INVALID_ARGUMENT when the matrix has no rows, is not square, or
// holds a cost outside [-kMaxAssignmentCost, kMaxAssignmentCost].
absl::StatusOr<std::vector<int>> SolveAssignment(const std::vector<std::vector<int64_t>>& cost);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_ASSIGNMENT_H_
