#include <cuda_bf16.h>

#include <algorithm>

#include "gpu_worker/cuda/moe_kernels.cuh"

namespace craft::gpu::internal {
namespace {

constexpr int kThreads = 256;

__device__ inline float Silu(float x) { return x / (1.0f + __expf(-x)); }

// 8 bf16 per thread and iteration: 16-byte loads and stores.
__global__ void SiluMulKernel(const uint4* gate, const uint4* up, uint4* out, int64_t vectors) {
  for (int64_t v = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; v < vectors;
       v += int64_t{gridDim.x} * blockDim.x) {
    uint4 g = gate[v];
    uint4 u = up[v];
    uint4 result;
    const auto* g2 = reinterpret_cast<const __nv_bfloat162*>(&g);
    const auto* u2 = reinterpret_cast<const __nv_bfloat162*>(&u);
    auto* r2 = reinterpret_cast<__nv_bfloat162*>(&result);
    for (int j = 0; j < 4; ++j) {
      const float2 gf = __bfloat1622float2(g2[j]);
      const float2 uf = __bfloat1622float2(u2[j]);
      r2[j] = __floats2bfloat162_rn(Silu(gf.x) * uf.x, Silu(gf.y) * uf.y);
    }
    out[v] = result;
  }
}

}  // namespace

cudaError_t LaunchSiluMul(const void* gate, const void* up, void* out, int64_t elements,
                          cudaStream_t stream) {
  if (elements % 8 != 0) return cudaErrorInvalidValue;
  const int64_t vectors = elements / 8;
  if (vectors == 0) return cudaSuccess;
  const int blocks = static_cast<int>(std::min<int64_t>((vectors + kThreads - 1) / kThreads, 4096));
  SiluMulKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint4*>(gate),
                                                 static_cast<const uint4*>(up),
                                                 static_cast<uint4*>(out), vectors);
  return cudaGetLastError();
}

}  // namespace craft::gpu::internal
