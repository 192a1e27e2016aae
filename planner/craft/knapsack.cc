#include "planner/craft/knapsack.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace craft::planner {
namespace {

constexpr double kUnreachable = -std::numeric_limits<double>::infinity();
constexpr double kTieTolerance = 1e-12;

}  // namespace

absl::StatusOr<MultipleChoiceKnapsack> MultipleChoiceKnapsack::Solve(
    const std::vector<std::vector<KnapsackOption>>& groups, int max_capacity) {
  if (max_capacity < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative capacity ", max_capacity));
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].empty() || groups[g].size() > std::numeric_limits<int16_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("group ", g, " has ", groups[g].size(), " options (need 1 to 32767)"));
    }
    for (const KnapsackOption& option : groups[g]) {
      if (option.weight < 0) {
        return absl::InvalidArgumentError(absl::StrCat("group ", g, " has a negative weight"));
      }
    }
  }
  MultipleChoiceKnapsack solved;
  solved.groups_ = groups;
  solved.max_capacity_ = max_capacity;
  std::vector<double> current(max_capacity + 1, kUnreachable);
  current[0] = 0.0;
  std::vector<double> next(max_capacity + 1);
  for (const std::vector<KnapsackOption>& options : groups) {
    std::vector<int16_t> pick(max_capacity + 1, -1);
    std::fill(next.begin(), next.end(), kUnreachable);
    // Option-major: each total c still sees the options in order (so ties
    // resolve as documented), and the inner loop runs over contiguous totals.
    // An unreachable total is -inf, which every reachable value beats; an
    // unreachable current[c - w] gives -inf, which beats nothing.
    for (size_t k = 0; k < options.size(); ++k) {
      const int w = options[k].weight;
      const double gain = options[k].value;
      for (int c = w; c <= max_capacity; ++c) {
        const double value = current[c - w] + gain;
        if (value > next[c] + kTieTolerance) {
          next[c] = value;
          pick[c] = static_cast<int16_t>(k);
        }
      }
    }
    solved.pick_.push_back(std::move(pick));
    current.swap(next);
  }
  solved.best_ = std::move(current);
  return solved;
}

absl::StatusOr<KnapsackChoice> MultipleChoiceKnapsack::Best(int capacity, int modulus,
                                                            int residue) const {
  if (modulus <= 0) return absl::InvalidArgumentError("modulus must be positive");
  if (capacity > max_capacity_) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity ", capacity, " exceeds the solved maximum ", max_capacity_));
  }
  int best_total = -1;
  for (int c = 0; c <= capacity; ++c) {
    if (best_[c] == kUnreachable || ((c % modulus) + modulus) % modulus != residue) continue;
    if (best_total < 0 || best_[c] > best_[best_total] + kTieTolerance) best_total = c;
  }
  if (best_total < 0) {
    return absl::NotFoundError(absl::StrCat("no choice has total weight <= ", capacity,
                                            " and = ", residue, " mod ", modulus));
  }
  KnapsackChoice choice;
  choice.option_per_group.assign(groups_.size(), 0);
  choice.total_weight = best_total;
  choice.total_value = best_[best_total];
  int c = best_total;
  for (int g = static_cast<int>(groups_.size()) - 1; g >= 0; --g) {
    const int k = pick_[g][c];
    choice.option_per_group[g] = k;
    c -= groups_[g][k].weight;
  }
  return choice;
}

}  // namespace craft::planner
