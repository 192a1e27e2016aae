// Internal to gpu_worker/cuda: the load-counting kernel's launcher.
#ifndef CRAFT_GPU_WORKER_CUDA_COUNT_KERNEL_CUH_
#define CRAFT_GPU_WORKER_CUDA_COUNT_KERNEL_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace craft::gpu::internal {

struct CountArgs {
  const int32_t* topk_ids = nullptr;  // tokens x top_k, row-major
  int64_t tokens = 0;
  int top_k = 0;
  int64_t window_id = 0;  // with layer: the replica choice's key
  int layer = 0;
  int num_experts = 0;
  const int32_t* replica_begin = nullptr;  // RoutingTable arrays on the device
  const int32_t* replica_slots = nullptr;
  int num_slots = 0;
  unsigned long long* slot_counts = nullptr;  // num_slots entries, accumulated
  unsigned long long* dropped = nullptr;      // invalid ids, accumulated
  int32_t* phy_ids = nullptr;                 // optional: each entry's slot or -1
};

// Enqueues the count of one batch on `stream`; `max_blocks` bounds the grid
// (a few per multiprocessor). Blocks keep a shared-memory histogram when the
// layer's slots fit, and add it to slot_counts once.
cudaError_t LaunchCount(const CountArgs& args, int max_blocks, cudaStream_t stream);

}  // namespace craft::gpu::internal

#endif  // CRAFT_GPU_WORKER_CUDA_COUNT_KERNEL_CUH_
