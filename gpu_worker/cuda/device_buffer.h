// Plain device memory for tests and benchmarks: a cudaMalloc'd buffer with
// synchronous host copies, usable from plain C++ (no CUDA headers).
//
//   CRAFT_ASSIGN_OR_RETURN(DeviceBuffer ids, DeviceBuffer::Allocate(0, n * sizeof(int32_t)));
//   CRAFT_RETURN_IF_ERROR(ids.CopyFromHost(host_ids.data(), n * sizeof(int32_t)));
//
// Thread-compatible. Move-only; frees its memory on destruction.
#ifndef CRAFT_GPU_WORKER_CUDA_DEVICE_BUFFER_H_
#define CRAFT_GPU_WORKER_CUDA_DEVICE_BUFFER_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace craft::gpu {

class DeviceBuffer {
 public:
  // `bytes` of device memory on `device`, zeroed.
  static absl::StatusOr<DeviceBuffer> Allocate(int device, int64_t bytes);

  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  int device() const { return device_; }

  // Blocking copies of `bytes` (at most bytes()) from or to host memory.
  absl::Status CopyFromHost(const void* host, int64_t bytes);
  absl::Status CopyToHost(void* host, int64_t bytes) const;

 private:
  void Free();

  int device_ = 0;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_DEVICE_BUFFER_H_
