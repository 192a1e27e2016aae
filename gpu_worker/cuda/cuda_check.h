// Internal to gpu_worker/cuda, for nvcc-compiled sources only (it includes
// the CUDA runtime's headers): CUDA errors as absl::Status, and a scoped
// current device.
#ifndef CRAFT_GPU_WORKER_CUDA_CUDA_CHECK_H_
#define CRAFT_GPU_WORKER_CUDA_CUDA_CHECK_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace craft::gpu::internal {

// OK for cudaSuccess; otherwise an error naming `what` and CUDA's own message.
// Out of memory is RESOURCE_EXHAUSTED; no driver or device FAILED_PRECONDITION;
// everything else INTERNAL.
absl::Status CudaStatus(cudaError_t error, absl::string_view what);

// Makes `device` current for the calling thread and restores the previous
// device on destruction. CUDA's current device is per host thread, so every
// public method that touches a device opens one of these.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device);
  ~ScopedDevice();
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

  // The status of switching; check it before using the device.
  const absl::Status& status() const { return status_; }

 private:
  int previous_ = -1;
  absl::Status status_;
};

}  // namespace craft::gpu::internal

#define CRAFT_CUDA_RETURN_IF_ERROR(expr) \
  CRAFT_RETURN_IF_ERROR(::craft::gpu::internal::CudaStatus((expr), #expr))

#define CRAFT_CUDA_SCOPED_DEVICE(device)                             \
  ::craft::gpu::internal::ScopedDevice craft_scoped_device_(device); \
  CRAFT_RETURN_IF_ERROR(craft_scoped_device_.status())

#endif  // CRAFT_GPU_WORKER_CUDA_CUDA_CHECK_H_
