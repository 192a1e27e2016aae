#include "planner/transfer/assignment.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::planner {
namespace {

constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max();

absl::Status CheckCostMatrix(const std::vector<std::vector<int64_t>>& cost) {
  if (cost.empty()) return absl::InvalidArgumentError("the cost matrix has no rows");
  for (size_t i = 0; i < cost.size(); ++i) {
    if (cost[i].size() != cost.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the cost matrix must be square: row ", i,
                                                     " has ", cost[i].size(), " columns, expected ",
                                                     cost.size()));
    }
    for (int64_t c : cost[i]) {
      if (c < -kMaxAssignmentCost || c > kMaxAssignmentCost) {
        return absl::InvalidArgumentError(absl::StrCat("cost ", c, " in row ", i, " is outside [-",
                                                       kMaxAssignmentCost, ", ", kMaxAssignmentCost,
                                                       "]"));
      }
    }
  }
  return absl::OkStatus();
}

// The Hungarian method with potentials. Rows are added one at a time; each
// addition grows a shortest-path tree over reduced costs from the new row
// until it reaches a free column, then flips the path. Indices are 1-based so
// that column 0 can stand for "the row being added".
//
// Costs are shifted to be non-negative first (every permutation picks one
// entry per row, so a constant shift changes no choice). Then, with R the cost
// range: potentials of free columns stay 0, so a row's potential is at most R;
// matched columns' potentials are at least -R; every reduced cost lies in
// [0, 3R], which the accepted cost range keeps below kInfinity.
class HungarianSolver {
 public:
  explicit HungarianSolver(const std::vector<std::vector<int64_t>>& cost)
      : n_(static_cast<int>(cost.size())),
        cost_(cost),
        row_potential_(n_ + 1, 0),
        column_potential_(n_ + 1, 0),
        row_of_column_(n_ + 1, 0),
        previous_column_(n_ + 1, 0) {
    int64_t min_cost = kInfinity;
    for (const std::vector<int64_t>& row : cost) {
      min_cost = std::min(min_cost, *std::min_element(row.begin(), row.end()));
    }
    shift_ = min_cost;
  }

  std::vector<int> Solve() {
    for (int row = 1; row <= n_; ++row) AddRow(row);
    std::vector<int> column_of_row(n_);
    for (int column = 1; column <= n_; ++column) {
      column_of_row[row_of_column_[column] - 1] = column - 1;
    }
    return column_of_row;
  }

 private:
  int64_t ReducedCost(int row, int column) const {
    return cost_[row - 1][column - 1] - shift_ - row_potential_[row] - column_potential_[column];
  }

  // Matches `row` by growing the shortest-path tree to a free column and
  // augmenting along it.
  void AddRow(int row) {
    row_of_column_[0] = row;
    column_potential_[0] = 0;  // the virtual column's potential is never read
    std::vector<int64_t> distance(n_ + 1, kInfinity);
    std::vector<bool> in_tree(n_ + 1, false);
    int column = 0;
    do {
      in_tree[column] = true;
      const int next = ExtendTree(column, distance, in_tree);
      column = next;
    } while (row_of_column_[column] != 0);
    Augment(column);
  }

  // Relaxes the edges out of the row matched to `column`, moves the
  // potentials by the smallest tentative distance, and returns the column that
  // distance reaches. Among equally near columns a free one wins (a shorter
  // augmenting path disturbs fewer existing matches), then the lowest index.
  int ExtendTree(int column, std::vector<int64_t>& distance, const std::vector<bool>& in_tree) {
    const int row = row_of_column_[column];
    int64_t delta = kInfinity;
    int nearest = 0;
    for (int j = 1; j <= n_; ++j) {
      if (in_tree[j]) continue;
      const int64_t reduced = ReducedCost(row, j);
      if (reduced < distance[j]) {
        distance[j] = reduced;
        previous_column_[j] = column;
      }
      const bool nearer = distance[j] < delta;
      const bool as_near_and_free =
          distance[j] == delta && row_of_column_[j] == 0 && row_of_column_[nearest] != 0;
      if (nearer || as_near_and_free) {
        delta = distance[j];
        nearest = j;
      }
    }
    for (int j = 0; j <= n_; ++j) {
      if (in_tree[j]) {
        row_potential_[row_of_column_[j]] += delta;
        column_potential_[j] -= delta;
      } else {
        distance[j] -= delta;
      }
    }
    return nearest;
  }

  // Flips the alternating path ending at the free column `column`.
  void Augment(int column) {
    while (column != 0) {
      const int previous = previous_column_[column];
      row_of_column_[column] = row_of_column_[previous];
      column = previous;
    }
  }

  const int n_;
  const std::vector<std::vector<int64_t>>& cost_;
  int64_t shift_ = 0;
  std::vector<int64_t> row_potential_;
  std::vector<int64_t> column_potential_;
  std::vector<int> row_of_column_;    // 0 = free
  std::vector<int> previous_column_;  // the tree edge into each column
};

}  // namespace

absl::StatusOr<std::vector<int>> SolveAssignment(const std::vector<std::vector<int64_t>>& cost) {
  CRAFT_RETURN_IF_ERROR(CheckCostMatrix(cost));
  return HungarianSolver(cost).Solve();
}

}  // namespace craft::planner
