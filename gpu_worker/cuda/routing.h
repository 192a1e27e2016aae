// The routing table of one MoE layer (log2phy: the physical slots of every
// logical expert) in the compressed form the device reads, the routing of one
// router choice with craft's replica choice (gpu_worker/replica_choice.h),
// and the CPU reference of the load-counting kernel.
//
//   absl::StatusOr<RoutingTable> table = RoutingTable::FromPhy2Log(layout.layers[l].phy2log, E);
//   std::vector<uint64_t> counts(table->num_slots());
//   uint64_t dropped = 0;
//   CountReference(topk_ids, /*top_k=*/8, window_id, layer, *table, absl::MakeSpan(counts),
//                  &dropped);
//
// Thread-compatible: a const RoutingTable may be read from many threads.
#ifndef CRAFT_GPU_WORKER_CUDA_ROUTING_H_
#define CRAFT_GPU_WORKER_CUDA_ROUTING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/host_device.h"
#include "gpu_worker/replica_choice.h"

namespace craft::gpu {

// log2phy of one layer in compressed form: expert e's replicas are the slots
// replica_slots[replica_begin[e] .. replica_begin[e + 1]), in slot order.
// Slots are the layer's physical slots over all GPUs, GPU-major (as in
// craft.layout.v1's phy2log).
struct RoutingTable {
  std::vector<int32_t> replica_begin;  // num_experts + 1 entries
  std::vector<int32_t> replica_slots;  // num_slots entries

  int num_experts() const { return static_cast<int>(replica_begin.size()) - 1; }
  int num_slots() const { return static_cast<int>(replica_slots.size()); }

  // From phy2log (slot -> logical expert). INVALID_ARGUMENT when an id is out
  // of [0, num_experts) or an expert has no replica.
  static absl::StatusOr<RoutingTable> FromPhy2Log(absl::Span<const int> phy2log, int num_experts);
};

// Where a router choice goes: the token, its rank k, and the window and
// layer it was routed in (gpu_worker/replica_choice.h keys on all four).
struct RouteKey {
  int64_t window_id = 0;
  int layer = 0;
  int64_t token = 0;
  int k = 0;
};

// The slot that choice `key` of `expert` goes to, or -1 when `expert` is not
// a valid id (padding such as -1, or out of range). Shared by the kernel and
// the reference; `begin` and `slots` are RoutingTable's arrays.
CRAFT_HOST_DEVICE inline int32_t RouteToSlot(int32_t expert, const RouteKey& key, int num_experts,
                                             const int32_t* begin, const int32_t* slots) {
  if (expert < 0 || expert >= num_experts) return -1;
  const int32_t first = begin[expert];
  const int32_t count = begin[expert + 1] - first;
  if (count <= 0) return -1;
  return slots[first +
               gpu_worker::ChooseReplica(key.window_id, key.layer, key.token, key.k, count)];
}

// CPU reference of the counting kernel: adds, for every entry of `topk_ids`
// (tokens x top_k, row-major, routed in `layer` of window `window_id`), one
// to the count of the slot it routes to, or to `*dropped` for invalid ids. Writes each entry's slot
// (or -1) to `phy_ids` when it is not empty (same size as topk_ids). Preconditions:
// slot_counts.size() >= table.num_slots(); topk_ids.size() is a multiple of top_k.
void CountReference(absl::Span<const int32_t> topk_ids, int top_k, int64_t window_id, int layer,
                    const RoutingTable& table, absl::Span<uint64_t> slot_counts, uint64_t* dropped,
                    absl::Span<int32_t> phy_ids = {});

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_ROUTING_H_
