// Packing one layer's replicas onto GPUs whose slot counts are given.
#ifndef CRAFT_PLANNER_CRAFT_PACKING_H_
#define CRAFT_PLANNER_CRAFT_PACKING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "planner/cluster.h"
#include "planner/layout.h"
#include "planner/replicate.h"

namespace craft::planner {

struct PackingOptions {
  // Never place two replicas of one expert on one GPU. Serving engines that
  // dispatch to "the local replica" gain nothing from a second local copy and
  // some (vllm-ascend) reject such layouts.
  bool forbid_duplicates = false;
};

// Longest-processing-time packing with capacities: replicas in decreasing
// per-replica load (ties: lower expert, then lower replica rank) each go to the
// GPU with a free slot that is best by, in order:
//   1. fewest replicas of this expert on the GPU's node (spreads copies over
//      nodes: a node failure or a congested NIC then hurts one copy only),
//   2. fewest replicas of this expert on the GPU,
//   3. least accumulated load,
//   4. most free slots left (a GPU that must still take many replicas should
//      not be filled with heavy ones last),
//   5. lowest rank.
// With forbid_duplicates, a replica whose every free GPU already holds its
// expert is made to fit by moving one already-placed replica to a free GPU
// (one swap); when even that fails the result is FAILED_PRECONDITION.
//
// `slots_per_gpu` must sum to the number of physical experts in `replication`.
// Pure function; thread-safe.
absl::StatusOr<LayerPlacement> PackLayer(absl::Span<const int64_t> weight,
                                         const Replication& replication,
                                         const std::vector<int>& slots_per_gpu,
                                         const ClusterShape& cluster,
                                         const PackingOptions& options);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_PACKING_H_
