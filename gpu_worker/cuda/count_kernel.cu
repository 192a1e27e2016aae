#include <algorithm>

#include "gpu_worker/cuda/count_kernel.cuh"
#include "gpu_worker/cuda/routing.h"

namespace craft::gpu::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSharedSlots = 12 * 1024;  // 48 KB of 32-bit counters

template <bool kSharedHistogram>
__global__ void CountKernel(const CountArgs args) {
  extern __shared__ unsigned int histogram[];
  if (kSharedHistogram) {
    for (int s = threadIdx.x; s < args.num_slots; s += blockDim.x) histogram[s] = 0;
    __syncthreads();
  }
  const int64_t entries = args.tokens * args.top_k;
  unsigned int dropped = 0;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < entries;
       p += int64_t{gridDim.x} * blockDim.x) {
    const RouteKey key{args.window_id, args.layer, p / args.top_k,
                       static_cast<int>(p % args.top_k)};
    const int32_t slot = RouteToSlot(__ldg(args.topk_ids + p), key, args.num_experts,
                                     args.replica_begin, args.replica_slots);
    if (slot < 0) {
      ++dropped;
    } else if (kSharedHistogram) {
      atomicAdd(&histogram[slot], 1u);
    } else {
      atomicAdd(&args.slot_counts[slot], 1ull);
    }
    if (args.phy_ids != nullptr) args.phy_ids[p] = slot;
  }
  if (dropped != 0) atomicAdd(args.dropped, static_cast<unsigned long long>(dropped));
  if (kSharedHistogram) {
    __syncthreads();
    for (int s = threadIdx.x; s < args.num_slots; s += blockDim.x) {
      if (histogram[s] != 0) atomicAdd(&args.slot_counts[s], histogram[s]);
    }
  }
}

}  // namespace

cudaError_t LaunchCount(const CountArgs& args, int max_blocks, cudaStream_t stream) {
  const int64_t entries = args.tokens * args.top_k;
  if (entries <= 0) return cudaSuccess;
  const int blocks = static_cast<int>(
      std::clamp<int64_t>((entries + kThreads - 1) / kThreads, 1, std::max(1, max_blocks)));
  if (args.num_slots <= kMaxSharedSlots) {
    CountKernel<true><<<blocks, kThreads, args.num_slots * sizeof(unsigned int), stream>>>(args);
  } else {
    CountKernel<false><<<blocks, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace craft::gpu::internal
