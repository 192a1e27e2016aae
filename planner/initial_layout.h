// The layout every worker starts with, known to all parties without being sent
// (its version on the wire is wire/version.h's kInitialVersion).
#ifndef CRAFT_PLANNER_INITIAL_LAYOUT_H_
#define CRAFT_PLANNER_INITIAL_LAYOUT_H_

#include "absl/status/statusor.h"
#include "planner/cluster.h"
#include "planner/layout.h"

namespace craft::planner {

// No replicas; each layer's E slots spread by AssignSlots (equal per-GPU
// totals over layers, within one per layer); expert e in global slot e, as
// engines load checkpoints before any rebalancing.
absl::StatusOr<Layout> ContiguousLayout(int num_layers, int num_experts,
                                        const ClusterShape& cluster);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_INITIAL_LAYOUT_H_
