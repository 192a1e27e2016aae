#include "planner/craft/slot_assignment.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::planner {

absl::StatusOr<std::vector<std::vector<int>>> AssignSlots(const std::vector<int>& slots_per_layer,
                                                          const ClusterShape& cluster) {
  CRAFT_RETURN_IF_ERROR(cluster.Validate());
  const int num_gpus = cluster.num_gpus;
  const int per_node = cluster.gpus_per_node();
  std::vector<int> running(num_gpus, 0);
  std::vector<int> order(num_gpus);
  std::vector<std::vector<int>> slots;
  slots.reserve(slots_per_layer.size());
  for (size_t l = 0; l < slots_per_layer.size(); ++l) {
    const int n = slots_per_layer[l];
    if (n < 0) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", l, " asks for ", n, " slots"));
    }
    std::vector<int> layer(num_gpus, n / num_gpus);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return std::make_tuple(running[a], a % per_node, a / per_node) <
             std::make_tuple(running[b], b % per_node, b / per_node);
    });
    for (int i = 0; i < n % num_gpus; ++i) ++layer[order[i]];
    for (int g = 0; g < num_gpus; ++g) running[g] += layer[g];
    slots.push_back(std::move(layer));
  }
  return slots;
}

}  // namespace craft::planner
