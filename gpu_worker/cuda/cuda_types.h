// CUDA handle types for plain C++ headers, without including CUDA's headers
// (which Bazel's C++ toolchain cannot see). cudaStream_t is CUstream_st*, so
// nvcc-compiled code passes its streams through these unchanged.
#ifndef CRAFT_GPU_WORKER_CUDA_CUDA_TYPES_H_
#define CRAFT_GPU_WORKER_CUDA_CUDA_TYPES_H_

struct CUstream_st;
struct CUevent_st;
struct CUgraphExec_st;

namespace craft::gpu {

using CudaStream = CUstream_st*;  // nullptr: the legacy default stream
using CudaEvent = CUevent_st*;
using CudaGraphExec = CUgraphExec_st*;

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_CUDA_TYPES_H_
