#include "gpu_worker/routing.h"

#include "gpu_worker/random.h"

namespace craft::gpu_worker {
namespace {

constexpr uint64_t kRoutingDomain = 0x726f757465ULL;  // "route"

}  // namespace

RoutingTable::RoutingTable(const planner::Layout& layout) {
  log2phy_.reserve(layout.layers.size());
  for (const planner::LayerPlacement& layer : layout.layers) {
    log2phy_.push_back(layer.LogicalToPhysical(layout.num_experts));
  }
}

int RoutingTable::Route(int layer, int expert, int64_t window_id, int token, int k) const {
  const std::vector<int>& replicas = log2phy_[layer][expert];
  if (replicas.size() == 1) return replicas[0];
  const uint64_t hash =
      HashWords({kRoutingDomain, static_cast<uint64_t>(window_id), static_cast<uint64_t>(layer),
                 static_cast<uint64_t>(token), static_cast<uint64_t>(k)});
  return replicas[hash % replicas.size()];
}

}  // namespace craft::gpu_worker
