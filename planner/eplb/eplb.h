// DeepSeek EPLB's `rebalance_experts`, ported exactly: the baseline that
// CRAFT's planner is compared against, and the placement SGLang and vLLM use.
//
// For every layer, EPLB picks how many replicas each logical expert gets and
// which GPU slot each replica occupies, from one row of per-expert loads:
//
//   1. Hierarchical policy (num_groups % num_nodes == 0): whole expert groups
//      are packed onto nodes (balanced by group load), each node replicates its
//      own experts into P / num_nodes slots, and each node's slots are packed
//      onto its GPUs, P / num_gpus per GPU.
//   2. Global policy (otherwise): the same with one group and one node, so
//      replication and packing see the whole layer at once.
//
// Upstream compares loads in float32 and sorts unstably; this port compares
// per-replica loads exactly (integer cross-multiplication) and breaks every tie
// by the lowest index, so results are deterministic and reproduce the
// reference examples. Like upstream, it ignores the previous placement and may
// put two replicas of one expert on the same GPU.
//
// Thread-safety: pure functions; thread-safe.
#ifndef CRAFT_PLANNER_EPLB_EPLB_H_
#define CRAFT_PLANNER_EPLB_EPLB_H_

#include <vector>

#include "absl/status/statusor.h"
#include "planner/cluster.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::planner {

// The three tensors upstream returns, as nested vectors.
struct EplbResult {
  // [L][P]: the logical expert in every physical slot; slot p sits on GPU
  // p / (P / num_gpus).
  std::vector<std::vector<int>> phy2log;
  // [L][E][maxcnt]: log2phy[l][e][r] is the slot of replica r of expert e,
  // padded with -1; maxcnt is the largest logcnt over all layers.
  std::vector<std::vector<std::vector<int>>> log2phy;
  // [L][E]: replicas per logical expert.
  std::vector<std::vector<int>> logcnt;
};

// DeepSeek's rebalance_experts(weight, num_replicas, num_groups, num_nodes,
// num_gpus), where `loads.aggregate(l)` is row l of `weight`.
//
// Fails with INVALID_ARGUMENT (instead of upstream's asserts) when a size is
// not positive, the trace is invalid, num_replicas < E or
// num_replicas % num_gpus != 0, and, for the hierarchical policy only (the
// global policy runs with one group on one node, as upstream),
// E % num_groups != 0 or num_gpus % num_nodes != 0.
absl::StatusOr<EplbResult> RebalanceExperts(const LoadTrace& loads, int num_replicas,
                                            int num_groups, int num_nodes, int num_gpus);

// RebalanceExperts as a craft Layout on `cluster`: every GPU holds
// num_replicas / num_gpus slots in every layer, in EPLB's slot order. Fails
// also when `cluster` itself is invalid.
absl::StatusOr<Layout> PlanEplb(const LoadTrace& loads, int num_replicas, int num_groups,
                                const ClusterShape& cluster);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_EPLB_EPLB_H_
