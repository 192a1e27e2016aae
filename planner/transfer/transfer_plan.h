// The transfer plan of a re-plan (docs/design.md §3, step 9): for every slot that
// needs weights, which replica of the committed layout to copy them from, and
// the bytes that puts on every link.
//
// Sources are always read from the previous (committed) layout: the two-phase
// apply (docs/design.md §4) stages new weights into spare buffers while the old ones
// still serve, so every old replica stays readable until the commit, and no
// transfer waits on another.
//
//   CRAFT_ASSIGN_OR_RETURN(Layout stable, Stabilize(committed, planned));
//   CRAFT_ASSIGN_OR_RETURN(TransferPlan plan,
//                          BuildTransferPlan(committed, stable, bytes_per_expert));
//
// Thread-safety: pure functions of their arguments; safe to call concurrently.
#ifndef CRAFT_PLANNER_TRANSFER_TRANSFER_PLAN_H_
#define CRAFT_PLANNER_TRANSFER_TRANSFER_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/cluster.h"
#include "planner/layout.h"

namespace craft::planner {

// The path a copy takes, cheapest first: the declaration order is the order in
// which BuildTransferPlan prefers sources.
enum class LinkKind {
  kLocal,      // within one GPU's memory
  kIntraNode,  // between GPUs of one node (NVLink or PCIe)
  kInterNode,  // between nodes (the network)
};

// The link a copy from `src_gpu` to `dst_gpu` takes on `cluster`.
LinkKind ClassifyLink(const ClusterShape& cluster, int src_gpu, int dst_gpu);

// One expert's weights copied into one slot of the next layout.
struct Transfer {
  int layer = 0;
  int expert = 0;
  int dst_gpu = 0;
  int dst_slot = 0;  // global slot index in next's phy2log of that layer
  int src_gpu = 0;
  int src_slot = 0;  // global slot index in previous's phy2log of that layer
  LinkKind kind = LinkKind::kLocal;
};

// Bytes one GPU sends another over the whole plan.
struct LinkBytes {
  int src_gpu = 0;
  int dst_gpu = 0;
  int64_t bytes = 0;
};

struct TransferPlan {
  std::vector<Transfer> transfers;  // one per changed slot, sorted by (layer, dst_gpu, dst_slot)
  std::vector<LinkBytes> links;     // per (src_gpu, dst_gpu) with src != dst, sorted by that pair
  int64_t bytes_local = 0;
  int64_t bytes_intra_node = 0;
  int64_t bytes_inter_node = 0;
  // Over GPUs, of the bytes they send or receive over links (local copies
  // excluded): the busiest GPU bounds how long the copy phase takes.
  int64_t max_bytes_sent_by_a_gpu = 0;
  int64_t max_bytes_received_by_a_gpu = 0;
};

// Plans the copies that turn `previous` into `next`: one transfer per changed
// slot as CountMoves counts them (unchanged slots need nothing). Each takes
// its weights from a replica of the same expert in `previous`, preferring the
// same GPU, then the same node, then another node; among equally near holders
// the one with the fewest bytes assigned to send so far (over all layers, in
// transfer order), then the lowest GPU, then the lowest slot.
//
// Fails with INVALID_ARGUMENT when the layouts are not comparable (see
// CountMoves), when bytes_per_expert <= 0, or when the plan's byte counts
// could overflow int64_t.
absl::StatusOr<TransferPlan> BuildTransferPlan(const Layout& previous, const Layout& next,
                                               int64_t bytes_per_expert);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_TRANSFER_TRANSFER_PLAN_H_
