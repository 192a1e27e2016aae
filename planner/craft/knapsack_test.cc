#include "planner/craft/knapsack.h"

#include <functional>
#include <random>

#include "gtest/gtest.h"

namespace craft::planner {
namespace {

// Best value by enumerating every choice; -inf when none fits.
double BruteForce(const std::vector<std::vector<KnapsackOption>>& groups, int capacity, int modulus,
                  int residue) {
  double best = -1e300;
  std::function<void(size_t, int, double)> visit = [&](size_t g, int weight, double value) {
    if (weight > capacity) return;
    if (g == groups.size()) {
      if (weight % modulus == residue && value > best) best = value;
      return;
    }
    for (const KnapsackOption& option : groups[g]) {
      visit(g + 1, weight + option.weight, value + option.value);
    }
  };
  visit(0, 0, 0.0);
  return best;
}

TEST(KnapsackTest, MatchesBruteForce) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> gain(-0.2, 1.0);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::vector<KnapsackOption>> groups(1 + rng() % 5);
    for (auto& options : groups) {
      options.resize(1 + rng() % 4);
      for (auto& option : options) option = {static_cast<int>(rng() % 9), gain(rng)};
    }
    const int capacity = static_cast<int>(rng() % 25);
    const int modulus = 1 + static_cast<int>(rng() % 4);
    const int residue = static_cast<int>(rng() % modulus);
    auto solved = MultipleChoiceKnapsack::Solve(groups, capacity);
    ASSERT_TRUE(solved.ok());
    const double expected = BruteForce(groups, capacity, modulus, residue);
    auto best = solved->Best(capacity, modulus, residue);
    if (expected < -1e299) {
      EXPECT_EQ(best.status().code(), absl::StatusCode::kNotFound);
      continue;
    }
    ASSERT_TRUE(best.ok());
    EXPECT_NEAR(best->total_value, expected, 1e-9) << "trial " << trial;
    // The reported choice really has that value and weight.
    double value = 0;
    int weight = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      value += groups[g][best->option_per_group[g]].value;
      weight += groups[g][best->option_per_group[g]].weight;
    }
    EXPECT_NEAR(value, best->total_value, 1e-9);
    EXPECT_EQ(weight, best->total_weight);
    EXPECT_LE(weight, capacity);
    EXPECT_EQ(weight % modulus, residue);
  }
}

TEST(KnapsackTest, EqualGainsPreferFewerReplicas) {
  const std::vector<std::vector<KnapsackOption>> groups = {{{0, 0.0}, {4, 0.5}, {8, 0.5}},
                                                           {{0, 0.0}, {4, 0.0}}};
  auto solved = MultipleChoiceKnapsack::Solve(groups, 16);
  ASSERT_TRUE(solved.ok());
  auto best = solved->Best(16);
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->total_weight, 4);
  EXPECT_EQ(best->option_per_group, (std::vector<int>{1, 0}));
}

// Every integer count on 1,024 GPUs is 1,025 options in a group.
TEST(KnapsackTest, GroupsMayHaveThousandsOfOptions) {
  std::vector<KnapsackOption> many;
  for (int w = 0; w <= 1024; ++w) many.push_back({w, w == 700 ? 2.0 : w / 1024.0});
  auto solved = MultipleChoiceKnapsack::Solve({many, many}, 2048);
  ASSERT_TRUE(solved.ok()) << solved.status();
  auto best = solved->Best(1500);
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->option_per_group, (std::vector<int>{700, 700}));
  auto bounded = solved->Best(1000);
  ASSERT_TRUE(bounded.ok());
  EXPECT_EQ(bounded->total_weight, 1000);  // 700 and 300
  EXPECT_DOUBLE_EQ(bounded->total_value, 2.0 + 300 / 1024.0);
}

TEST(KnapsackTest, RejectsBadInput) {
  EXPECT_FALSE(MultipleChoiceKnapsack::Solve({{}}, 4).ok());
  EXPECT_FALSE(MultipleChoiceKnapsack::Solve({{{-1, 0.0}}}, 4).ok());
  EXPECT_FALSE(MultipleChoiceKnapsack::Solve({{{1, 0.0}}}, -1).ok());
  auto solved = MultipleChoiceKnapsack::Solve({{{1, 0.0}}}, 4);
  ASSERT_TRUE(solved.ok());
  EXPECT_FALSE(solved->Best(5).ok());
  EXPECT_FALSE(solved->Best(4, 0).ok());
  EXPECT_EQ(solved->Best(0).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace craft::planner
