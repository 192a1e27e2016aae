#include <algorithm>

#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/slot_kernels.cuh"

namespace craft::gpu::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 2048;

int BlocksFor(int64_t items, int per_thread) {
  const int64_t blocks = (items + int64_t{kThreads} * per_thread - 1) / (kThreads * per_thread);
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

__device__ inline uint64_t Join(uint32_t lo, uint32_t hi) {
  return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32);
}

// One thread writes 16 bytes (8 elements) per iteration.
__global__ void FillKernel(uint4* dst, uint64_t key, int64_t vectors) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors;
       v += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t w0 = FillWord(key, 2 * v);
    const uint64_t w1 = FillWord(key, 2 * v + 1);
    dst[v] = make_uint4(static_cast<uint32_t>(w0), static_cast<uint32_t>(w0 >> 32),
                        static_cast<uint32_t>(w1), static_cast<uint32_t>(w1 >> 32));
  }
}

// Kernel parameters are passed by value: no device-side pointer array.
struct BufferBatch {
  const uint4* buffers[kChecksumBatch];
  __device__ void Load(int i, int64_t v, uint64_t* w0, uint64_t* w1) const {
    const uint4 x = __ldg(buffers[i] + v);
    *w0 = Join(x.x, x.y);
    *w1 = Join(x.z, x.w);
  }
};

struct KeyBatch {
  uint64_t keys[kChecksumBatch];
  __device__ void Load(int i, int64_t v, uint64_t* w0, uint64_t* w1) const {
    *w0 = FillWord(keys[i], 2 * v);
    *w1 = FillWord(keys[i], 2 * v + 1);
  }
};

// blockIdx.y picks the buffer; each thread sums the terms of a grid-stride
// run of 16-byte vectors, then the block reduces and adds once atomically.
template <class Source>
__global__ void ChecksumTermsKernel(const Source source, int64_t vectors,
                                    unsigned long long* term_sums) {
  const int i = blockIdx.y;
  uint64_t sum = 0;
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors;
       v += int64_t{gridDim.x} * blockDim.x) {
    uint64_t w0, w1;
    source.Load(i, v, &w0, &w1);
    sum += ChecksumTerm(w0, 2 * v) + ChecksumTerm(w1, 2 * v + 1);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    sum += __shfl_down_sync(0xffffffffu, sum, offset);
  }
  __shared__ uint64_t warp_sums[kThreads / 32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint64_t block_sum = 0;
    for (int w = 0; w < kThreads / 32; ++w) block_sum += warp_sums[w];
    atomicAdd(&term_sums[i], static_cast<unsigned long long>(block_sum));
  }
}

template <class Source>
cudaError_t LaunchTerms(const Source& source, int count, int64_t bytes,
                        unsigned long long* term_sums, cudaStream_t stream) {
  if (count <= 0 || count > kChecksumBatch || bytes % 16 != 0) return cudaErrorInvalidValue;
  const int64_t vectors = bytes / 16;
  const dim3 grid(BlocksFor(vectors, 8), count);
  ChecksumTermsKernel<<<grid, kThreads, 0, stream>>>(source, vectors, term_sums);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchFillExpert(void* dst, uint64_t key, int64_t elements, cudaStream_t stream) {
  if (elements % 8 != 0) return cudaErrorInvalidValue;
  const int64_t vectors = elements / 8;
  FillKernel<<<BlocksFor(vectors, 4), kThreads, 0, stream>>>(static_cast<uint4*>(dst), key,
                                                             vectors);
  return cudaGetLastError();
}

cudaError_t LaunchChecksumTerms(const void* const* buffers, int count, int64_t bytes,
                                unsigned long long* term_sums, cudaStream_t stream) {
  BufferBatch batch{};
  for (int i = 0; i < count && i < kChecksumBatch; ++i) {
    batch.buffers[i] = static_cast<const uint4*>(buffers[i]);
  }
  return LaunchTerms(batch, count, bytes, term_sums, stream);
}

cudaError_t LaunchExpectedChecksumTerms(const uint64_t* keys, int count, int64_t bytes,
                                        unsigned long long* term_sums, cudaStream_t stream) {
  KeyBatch batch{};
  for (int i = 0; i < count && i < kChecksumBatch; ++i) batch.keys[i] = keys[i];
  return LaunchTerms(batch, count, bytes, term_sums, stream);
}

}  // namespace craft::gpu::internal
