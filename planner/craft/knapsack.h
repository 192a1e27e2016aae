// Exact multiple-choice knapsack over small integer weights.
#ifndef CRAFT_PLANNER_CRAFT_KNAPSACK_H_
#define CRAFT_PLANNER_CRAFT_KNAPSACK_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace craft::planner {

// One option of one group: its weight (replicas) and value (gain).
struct KnapsackOption {
  int weight = 0;
  double value = 0.0;
};

struct KnapsackChoice {
  std::vector<int> option_per_group;  // index into each group's options
  int total_weight = 0;
  double total_value = 0.0;
};

// Picks exactly one option per group to maximise the summed value under a
// weight limit, by dynamic programming over exact total weights:
// O(groups x max_capacity x options). CRAFT uses it with a group per MoE
// layer, options = candidate replica counts, capacity = R x D.
//
// Because the table keeps the best value for every exact total weight, one
// solve answers every capacity up to `max_capacity` (auto-R sweeps R with it)
// and constraints on the total such as "a multiple of D".
//
// Ties are deterministic: a value must beat the incumbent by more than
// 1e-12 to replace it, options are tried in order and smaller totals win, so
// equal gains prefer fewer replicas.
//
//   auto solved = MultipleChoiceKnapsack::Solve(groups, 512);
//   auto best = solved->Best(/*capacity=*/512, /*modulus=*/64, /*residue=*/0);
//
// Immutable after Solve(); thread-safe.
class MultipleChoiceKnapsack {
 public:
  // Fails when a group is empty, a weight is negative, or max_capacity < 0.
  static absl::StatusOr<MultipleChoiceKnapsack> Solve(
      const std::vector<std::vector<KnapsackOption>>& groups, int max_capacity);

  // The best choice with total weight <= capacity and
  // total_weight % modulus == residue. NOT_FOUND when no choice fits.
  absl::StatusOr<KnapsackChoice> Best(int capacity, int modulus = 1, int residue = 0) const;

 private:
  MultipleChoiceKnapsack() = default;

  std::vector<std::vector<KnapsackOption>> groups_;
  int max_capacity_ = 0;
  std::vector<double> best_;                // best value of exactly weight c after all groups
  std::vector<std::vector<int16_t>> pick_;  // [group][c]: option chosen, -1 = unreachable
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_KNAPSACK_H_
