#include "planner/initial_layout.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/craft/slot_assignment.h"

namespace craft::planner {

absl::StatusOr<Layout> ContiguousLayout(int num_layers, int num_experts,
                                        const ClusterShape& cluster) {
  if (num_layers <= 0 || num_experts <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model shape must be positive, got ", num_layers, " x ", num_experts));
  }
  CRAFT_ASSIGN_OR_RETURN(auto slots,
                         AssignSlots(std::vector<int>(num_layers, num_experts), cluster));
  Layout layout;
  layout.num_experts = num_experts;
  layout.cluster = cluster;
  for (int l = 0; l < num_layers; ++l) {
    LayerPlacement layer{slots[l], std::vector<int>(num_experts)};
    std::iota(layer.phy2log.begin(), layer.phy2log.end(), 0);
    layout.layers.push_back(std::move(layer));
  }
  return layout;
}

}  // namespace craft::planner
