// The routing table: which physical slot serves each (token, choice).
//
// Built from the whole serving layout (this worker routes its tokens to
// replicas on every GPU): log2phy lists every logical expert's replicas in
// slot order, and the replica of a choice is replica_choice.h's, the rule the
// CUDA counting kernel applies too.
//
//   RoutingTable table(layout);
//   int slot = table.Route(layer, expert, window_id, token, k);
//
// Thread-safety: immutable after construction; safe to share.
#ifndef CRAFT_GPU_WORKER_ROUTING_H_
#define CRAFT_GPU_WORKER_ROUTING_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "planner/layout.h"

namespace craft::gpu_worker {

class RoutingTable {
 public:
  // `layout` must be valid (Layout::Validate): every expert has a replica.
  explicit RoutingTable(const planner::Layout& layout);

  int num_layers() const { return static_cast<int>(log2phy_.size()); }
  int num_experts() const { return log2phy_.empty() ? 0 : static_cast<int>(log2phy_[0].size()); }
  // The global slots holding `expert` in `layer`, ascending.
  absl::Span<const int> Replicas(int layer, int expert) const { return log2phy_[layer][expert]; }

  // The global slot that serves choice `k` of token `token` for `expert`.
  int Route(int layer, int expert, int64_t window_id, int token, int k) const;

 private:
  std::vector<std::vector<std::vector<int>>> log2phy_;  // [layer][expert] -> slots
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_ROUTING_H_
