// Internal to gpu_worker/cuda: the element-wise step of the expert FFN.
#ifndef CRAFT_GPU_WORKER_CUDA_MOE_KERNELS_CUH_
#define CRAFT_GPU_WORKER_CUDA_MOE_KERNELS_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace craft::gpu::internal {

// out[i] = silu(gate[i]) * up[i] for i < elements (bf16 in and out, float
// arithmetic); `elements` a multiple of 8, buffers 16-byte aligned.
cudaError_t LaunchSiluMul(const void* gate, const void* up, void* out, int64_t elements,
                          cudaStream_t stream);

}  // namespace craft::gpu::internal

#endif  // CRAFT_GPU_WORKER_CUDA_MOE_KERNELS_CUH_
