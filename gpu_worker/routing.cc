#include "gpu_worker/routing.h"

#include "gpu_worker/replica_choice.h"

namespace craft::gpu_worker {

RoutingTable::RoutingTable(const planner::Layout& layout) {
  log2phy_.reserve(layout.layers.size());
  for (const planner::LayerPlacement& layer : layout.layers) {
    log2phy_.push_back(layer.LogicalToPhysical(layout.num_experts));
  }
}

int RoutingTable::Route(int layer, int expert, int64_t window_id, int token, int k) const {
  const std::vector<int>& replicas = log2phy_[layer][expert];
  return replicas[ChooseReplica(window_id, layer, token, k, static_cast<int>(replicas.size()))];
}

}  // namespace craft::gpu_worker
