// CRAFT_HOST_DEVICE marks inline functions that both nvcc-compiled kernels and
// plain C++ (the host compiler alone, for CPU references) must compute
// bit-identically.
#ifndef CRAFT_GPU_WORKER_CUDA_HOST_DEVICE_H_
#define CRAFT_GPU_WORKER_CUDA_HOST_DEVICE_H_

#if defined(__CUDACC__)
#define CRAFT_HOST_DEVICE __host__ __device__
#else
#define CRAFT_HOST_DEVICE
#endif

#endif  // CRAFT_GPU_WORKER_CUDA_HOST_DEVICE_H_
