// Tests of the min-cost assignment solver against brute force.
#include "planner/transfer/assignment.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace craft::planner {
namespace {

using Matrix = std::vector<std::vector<int64_t>>;

int64_t TotalCost(const Matrix& cost, const std::vector<int>& column_of_row) {
  int64_t total = 0;
  for (size_t row = 0; row < cost.size(); ++row) total += cost[row][column_of_row[row]];
  return total;
}

int64_t BruteForceMinimum(const Matrix& cost) {
  std::vector<int> permutation(cost.size());
  std::iota(permutation.begin(), permutation.end(), 0);
  int64_t best = TotalCost(cost, permutation);
  while (std::next_permutation(permutation.begin(), permutation.end())) {
    best = std::min(best, TotalCost(cost, permutation));
  }
  return best;
}

bool IsPermutation(std::vector<int> columns) {
  std::sort(columns.begin(), columns.end());
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] != static_cast<int>(i)) return false;
  }
  return true;
}

Matrix RandomMatrix(std::mt19937& rng, int n, int64_t low, int64_t high) {
  std::uniform_int_distribution<int64_t> value(low, high);
  Matrix cost(n, std::vector<int64_t>(n));
  for (auto& row : cost) {
    for (int64_t& c : row) c = value(rng);
  }
  return cost;
}

TEST(SolveAssignmentTest, MatchesBruteForceOnRandomMatrices) {
  for (int seed = 0; seed < 300; ++seed) {
    std::mt19937 rng(seed);
    const int n = 1 + seed % 7;
    // Small ranges make many ties; negative costs must work too.
    const int64_t range = seed % 3 == 0 ? 3 : 1000;
    const Matrix cost = RandomMatrix(rng, n, seed % 2 == 0 ? -range : 0, range);
    absl::StatusOr<std::vector<int>> columns = SolveAssignment(cost);
    ASSERT_TRUE(columns.ok()) << columns.status();
    ASSERT_EQ(columns->size(), static_cast<size_t>(n));
    EXPECT_TRUE(IsPermutation(*columns)) << "seed " << seed;
    EXPECT_EQ(TotalCost(cost, *columns), BruteForceMinimum(cost)) << "seed " << seed;
  }
}

TEST(SolveAssignmentTest, SingleEntry) {
  absl::StatusOr<std::vector<int>> columns = SolveAssignment({{42}});
  ASSERT_TRUE(columns.ok());
  EXPECT_EQ(*columns, std::vector<int>{0});
}

TEST(SolveAssignmentTest, TiesAreDeterministic) {
  // Every permutation costs the same: the identity comes back.
  const Matrix flat(5, std::vector<int64_t>(5, 7));
  EXPECT_EQ(*SolveAssignment(flat), (std::vector<int>{0, 1, 2, 3, 4}));
  // Repeated calls on a matrix full of ties agree.
  std::mt19937 rng(1);
  const Matrix tied = RandomMatrix(rng, 6, 0, 1);
  const std::vector<int> first = *SolveAssignment(tied);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(*SolveAssignment(tied), first);
}

TEST(SolveAssignmentTest, PrefersTheCheapDiagonalOfAnAntiDiagonalMatrix) {
  const Matrix cost = {{9, 9, 1}, {9, 1, 9}, {1, 9, 9}};
  EXPECT_EQ(*SolveAssignment(cost), (std::vector<int>{2, 1, 0}));
}

TEST(SolveAssignmentTest, HandlesTheLargestAcceptedCosts) {
  const Matrix cost = {{kMaxAssignmentCost, -kMaxAssignmentCost},
                       {-kMaxAssignmentCost, kMaxAssignmentCost}};
  EXPECT_EQ(*SolveAssignment(cost), (std::vector<int>{1, 0}));
}

TEST(SolveAssignmentTest, RejectsMalformedMatrices) {
  EXPECT_EQ(SolveAssignment({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveAssignment(Matrix{std::vector<int64_t>{}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveAssignment({{1, 2}, {3}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveAssignment({{1, 2}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveAssignment({{kMaxAssignmentCost + 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::planner
