// Capacity-aware slot assignment: how many slots each GPU gets in each layer.
#ifndef CRAFT_PLANNER_CRAFT_SLOT_ASSIGNMENT_H_
#define CRAFT_PLANNER_CRAFT_SLOT_ASSIGNMENT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "planner/cluster.h"

namespace craft::planner {

// Distributes `slots_per_layer[l]` slots of every layer over the GPUs so that
// every GPU ends with the same number of slots summed over layers (equal
// expert memory, hence equal KV cache: with data-parallel attention the GPU
// with the smallest KV cache caps everyone's concurrency).
//
// Each GPU gets floor(n_l / D) slots of layer l; the n_l % D leftover slots go
// to the GPUs with the fewest slots so far. Ties are broken node-interleaved
// (local GPU index first, then node) so extra slots spread across nodes. This
// keeps every GPU's running total within one of every other's, so when the
// grand total is a multiple of D all GPUs finish equal.
//
// Returns [layer][gpu]. Pure function; thread-safe.
absl::StatusOr<std::vector<std::vector<int>>> AssignSlots(const std::vector<int>& slots_per_layer,
                                                          const ClusterShape& cluster);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CRAFT_SLOT_ASSIGNMENT_H_
