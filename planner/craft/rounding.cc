#include "planner/craft/rounding.h"

#include <algorithm>
#include <numeric>

namespace craft::planner {

std::vector<int> RoundFinalAlloc(std::vector<int> replicas, int num_gpus, int64_t base_slots) {
  int64_t total = std::accumulate(replicas.begin(), replicas.end(), int64_t{0});
  int64_t target = total;
  while ((base_slots + target) % num_gpus != 0) ++target;
  while (total < target && !replicas.empty()) {
    const auto smallest = std::min_element(replicas.begin(), replicas.end());
    int64_t step = *smallest == 0 ? 1 : *smallest;
    step = std::min(step, target - total);
    *smallest += static_cast<int>(step);
    total += step;
  }
  return replicas;
}

}  // namespace craft::planner
