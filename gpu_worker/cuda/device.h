// Whether this process can use CUDA devices, for tests that skip cleanly on
// machines without a GPU or driver, and for tools that pick ranks.
//
//   CudaAvailability cuda = ProbeCuda();
//   if (cuda.devices < 2) GTEST_SKIP() << "needs 2 GPUs: " << cuda.reason;
//
// Plain C++ header (no CUDA headers). Thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_DEVICE_H_
#define CRAFT_GPU_WORKER_CUDA_DEVICE_H_

#include <string>

namespace craft::gpu {

struct CudaAvailability {
  int devices = 0;     // usable devices; 0 when none or when CUDA fails
  std::string reason;  // why there are none (CUDA's error), or a summary of them
};

// Never fails: a machine without a driver reports 0 devices and the reason.
CudaAvailability ProbeCuda();

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_DEVICE_H_
