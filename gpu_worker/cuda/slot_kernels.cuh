// Internal to gpu_worker/cuda: launchers of the fill and checksum kernels
// (expert_hash.h defines what they compute). Enqueue only; never block.
#ifndef CRAFT_GPU_WORKER_CUDA_SLOT_KERNELS_CUH_
#define CRAFT_GPU_WORKER_CUDA_SLOT_KERNELS_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace craft::gpu::internal {

// Buffers (or keys) per checksum launch; callers loop over larger batches.
inline constexpr int kChecksumBatch = 128;

// Writes the deterministic contents of the expert with `key` (`elements` bf16
// values, a multiple of 8) to `dst`, 16-byte aligned.
cudaError_t LaunchFillExpert(void* dst, uint64_t key, int64_t elements, cudaStream_t stream);

// Adds the checksum terms of buffers[i] (each `bytes` long, a multiple of 16,
// 16-byte aligned) to term_sums[i], for i < count <= kChecksumBatch.
// term_sums is device memory the caller zeroed; FinishChecksum() completes.
cudaError_t LaunchChecksumTerms(const void* const* buffers, int count, int64_t bytes,
                                unsigned long long* term_sums, cudaStream_t stream);

// The same terms for experts that were filled with keys[i], computed without
// reading memory.
cudaError_t LaunchExpectedChecksumTerms(const uint64_t* keys, int count, int64_t bytes,
                                        unsigned long long* term_sums, cudaStream_t stream);

}  // namespace craft::gpu::internal

#endif  // CRAFT_GPU_WORKER_CUDA_SLOT_KERNELS_CUH_
