// What one worker runs: its rank, the cluster and the model's MoE shape.
//
// Every layout a worker accepts must have this shape; Validate() checks flag
// values, CheckLayout() checks what the planner sends.
//
// Thread-safety: a plain value.
#ifndef CRAFT_GPU_WORKER_WORKER_SHAPE_H_
#define CRAFT_GPU_WORKER_WORKER_SHAPE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "craft/v1/layout.pb.h"
#include "planner/cluster.h"
#include "planner/layout.h"

namespace craft::gpu_worker {

// Limits that keep a mistyped flag from allocating the machine away.
inline constexpr int kMaxLayers = 4096;
inline constexpr int kMaxExperts = 1 << 16;
inline constexpr int64_t kMaxBytesPerExpert = int64_t{1} << 30;

struct WorkerShape {
  int gpu = 0;  // this worker's global rank
  planner::ClusterShape cluster;
  int num_layers = 0;
  int num_experts = 0;
  int top_k = 1;
  int64_t bytes_per_expert = 0;

  // INVALID_ARGUMENT naming the first bad field.
  absl::Status Validate() const;
  // INVALID_ARGUMENT unless `layout` has this shape's layers, experts, GPUs
  // and nodes (the layout itself must already be valid).
  absl::Status CheckLayout(const planner::Layout& layout) const;
  craft::v1::ModelShape ModelProto() const;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_WORKER_SHAPE_H_
