// The shape of an expert-parallel deployment: how many GPUs, on how many nodes.
#ifndef CRAFT_PLANNER_CLUSTER_H_
#define CRAFT_PLANNER_CLUSTER_H_

#include "absl/status/status.h"

namespace craft::planner {

// GPU ranks are node-major: ranks [n * gpus_per_node, (n + 1) * gpus_per_node)
// live on node n, as in every serving framework's rank layout.
struct ClusterShape {
  int num_gpus = 0;
  int num_nodes = 1;

  int gpus_per_node() const { return num_gpus / num_nodes; }
  int NodeOf(int gpu) const { return gpu / gpus_per_node(); }

  // OK when both counts are positive and the GPUs divide evenly over nodes.
  absl::Status Validate() const;
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_CLUSTER_H_
