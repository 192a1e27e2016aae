#include "gpu_worker/cuda/device_buffer.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/cuda_check.h"

namespace craft::gpu {

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(int device, int64_t bytes) {
  if (bytes < 0) return absl::InvalidArgumentError(absl::StrCat("negative size ", bytes));
  CRAFT_CUDA_SCOPED_DEVICE(device);
  DeviceBuffer buffer;
  buffer.device_ = device;
  buffer.bytes_ = bytes;
  CRAFT_RETURN_IF_ERROR(internal::CudaStatus(
      cudaMalloc(&buffer.data_, bytes), absl::StrCat("cudaMalloc(", bytes, ") on GPU ", device)));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemset(buffer.data_, 0, bytes));
  return buffer;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : device_(other.device_),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    device_ = other.device_;
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Free(); }

void DeviceBuffer::Free() {
  if (data_ == nullptr) return;
  internal::ScopedDevice device(device_);
  cudaFree(data_);
  data_ = nullptr;
}

absl::Status DeviceBuffer::CopyFromHost(const void* host, int64_t bytes) {
  if (bytes < 0 || bytes > bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status DeviceBuffer::CopyToHost(void* host, int64_t bytes) const {
  if (bytes < 0 || bytes > bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  CRAFT_CUDA_SCOPED_DEVICE(device_);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

}  // namespace craft::gpu
