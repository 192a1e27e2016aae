#include "gpu_worker/cuda/device.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace craft::gpu {

CudaAvailability ProbeCuda() {
  CudaAvailability result;
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    result.reason = absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorString(error));
    return result;
  }
  result.devices = count;
  if (count == 0) {
    result.reason = "no CUDA device";
    return result;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    result.reason = absl::StrCat(count, " x ", prop.name, " (sm_", prop.major, prop.minor, ")");
  }
  return result;
}

}  // namespace craft::gpu
