// The routing table of one MoE layer (log2phy: the physical slots of every
// logical expert), the deterministic replica choice, and the CPU reference of
// the load-counting kernel.
//
//   absl::StatusOr<RoutingTable> table = RoutingTable::FromPhy2Log(layout.layers[l].phy2log, E);
//   std::vector<uint64_t> counts(table->num_slots());
//   uint64_t dropped = 0;
//   CountReference(topk_ids, /*top_k=*/8, *table, absl::MakeSpan(counts), &dropped);
//
// Thread-compatible: a const RoutingTable may be read from many threads.
#ifndef CRAFT_GPU_WORKER_CUDA_ROUTING_H_
#define CRAFT_GPU_WORKER_CUDA_ROUTING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/host_device.h"

namespace craft::gpu {

// Which replica of an expert with `replica_count` replicas serves the token
// at `token` (its index in the batch): round robin over tokens. Deterministic
// (no random state, the same on every rank and in the CPU reference), and an
// expert's tokens spread over its replicas in equal shares up to one. Keyed
// by token rather than by top-k position: with top-8 and two replicas, the
// position (token * 8 + j) % 2 would depend on j alone and send every token
// that ranked the expert first to the same replica.
CRAFT_HOST_DEVICE inline int ChooseReplica(int64_t token, int replica_count) {
  return static_cast<int>(token % replica_count);
}

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

// The slot that assignment j of token `token` goes to, or -1 when `expert` is
// not a valid id (padding such as -1, or out of range). Shared by the kernel
// and the reference; `begin` and `slots` are RoutingTable's arrays.
CRAFT_HOST_DEVICE inline int32_t RouteToSlot(int32_t expert, int64_t token, int num_experts,
                                             const int32_t* begin, const int32_t* slots) {
  if (expert < 0 || expert >= num_experts) return -1;
  const int32_t first = begin[expert];
  const int32_t count = begin[expert + 1] - first;
  if (count <= 0) return -1;
  return slots[first + ChooseReplica(token, count)];
}

// CPU reference of the counting kernel: adds, for every entry of `topk_ids`
// (tokens x top_k, row-major), one to the count of the slot it routes to, or
// to `*dropped` for invalid ids. Writes each entry's slot (or -1) to
// `phy_ids` when it is not empty (same size as topk_ids).
// Preconditions: slot_counts.size() >= table.num_slots(); topk_ids.size() is
// a multiple of top_k.
void CountReference(absl::Span<const int32_t> topk_ids, int top_k, const RoutingTable& table,
                    absl::Span<uint64_t> slot_counts, uint64_t* dropped,
                    absl::Span<int32_t> phy_ids = {});

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_ROUTING_H_
