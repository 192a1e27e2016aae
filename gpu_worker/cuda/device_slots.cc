#include "gpu_worker/cuda/device_slots.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/cuda_check.h"
#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/slot_kernels.cuh"

namespace craft::gpu {

using internal::kChecksumBatch;

namespace {

constexpr int64_t kAlignment = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceSlots>> DeviceSlots::Create(const SlotsConfig& config) {
  CRAFT_RETURN_IF_ERROR(config.shape.Validate());
  if (config.staging_buffers < 0 ||
      std::any_of(config.slots_per_layer.begin(), config.slots_per_layer.end(),
                  [](int n) { return n < 0; })) {
    return absl::InvalidArgumentError("negative slot or staging count");
  }
  std::unique_ptr<DeviceSlots> slots(new DeviceSlots(config));
  CRAFT_RETURN_IF_ERROR(slots->Allocate());
  return slots;
}

DeviceSlots::DeviceSlots(const SlotsConfig& config)
    : config_(config), stride_((config.shape.bytes() + kAlignment - 1) / kAlignment * kAlignment) {
  int next = 0;
  for (int n : config.slots_per_layer) {
    std::vector<int>& layer = slot_buffer_.emplace_back(n);
    std::iota(layer.begin(), layer.end(), next);
    next += n;
  }
  acquired_.assign(next + config.staging_buffers, false);
  // Highest index first, so AcquireStaging hands out the lowest.
  for (int b = next + config.staging_buffers - 1; b >= next; --b) free_staging_.push_back(b);
}

absl::Status DeviceSlots::Allocate() {
  CRAFT_CUDA_SCOPED_DEVICE(config_.device);
  const int64_t buffers = static_cast<int64_t>(acquired_.size());
  if (buffers > 0) {
    CRAFT_RETURN_IF_ERROR(
        internal::CudaStatus(cudaMalloc(&arena_, buffers * stride_),
                             absl::StrCat("cudaMalloc of ", buffers, " expert buffers of ", stride_,
                                          " bytes on GPU ", config_.device)));
    CRAFT_CUDA_RETURN_IF_ERROR(cudaMemset(arena_, 0, buffers * stride_));
  }
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&sums_device_, kChecksumBatch * sizeof(*sums_device_)));
  CRAFT_CUDA_RETURN_IF_ERROR(
      cudaHostAlloc(&sums_host_, kChecksumBatch * sizeof(*sums_host_), cudaHostAllocDefault));
  return absl::OkStatus();
}

DeviceSlots::~DeviceSlots() {
  internal::ScopedDevice device(config_.device);
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  cudaFreeHost(sums_host_);
  cudaFree(sums_device_);
  cudaFree(arena_);
}

absl::StatusOr<std::vector<uint64_t>> DeviceSlots::SumTerms(
    size_t items, absl::FunctionRef<absl::Status(size_t, int, unsigned long long*)> launch) {
  std::vector<uint64_t> result(items);
  for (size_t begin = 0; begin < items; begin += kChecksumBatch) {
    const int count = static_cast<int>(std::min<size_t>(kChecksumBatch, items - begin));
    const size_t bytes = count * sizeof(*sums_device_);
    CRAFT_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(sums_device_, 0, bytes, stream_));
    CRAFT_RETURN_IF_ERROR(launch(begin, count, sums_device_));
    CRAFT_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(sums_host_, sums_device_, bytes, cudaMemcpyDeviceToHost, stream_));
    CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    for (int i = 0; i < count; ++i) {
      result[begin + i] =
          FinishChecksum(sums_host_[i], static_cast<uint64_t>(config_.shape.bytes()));
    }
  }
  return result;
}

void* DeviceSlots::slot_data(int layer, int slot) const {
  return buffer(slot_buffer_[layer][slot]);
}

absl::Status DeviceSlots::CheckSlot(int layer, int slot) const {
  if (layer < 0 || layer >= num_layers() || slot < 0 || slot >= num_slots(layer)) {
    return absl::OutOfRangeError(absl::StrCat("no slot ", slot, " in layer ", layer));
  }
  return absl::OkStatus();
}

absl::Status DeviceSlots::FillSlot(int layer, int slot, int expert) {
  CRAFT_RETURN_IF_ERROR(CheckSlot(layer, slot));
  return FillBuffer(slot_data(layer, slot), {layer, expert});
}

absl::Status DeviceSlots::FillBuffer(void* buffer, ExpertId expert) {
  CRAFT_CUDA_SCOPED_DEVICE(config_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(internal::LaunchFillExpert(
      buffer, ExpertKey(expert.layer, expert.expert), config_.shape.elements(), stream_));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> DeviceSlots::Checksums(absl::Span<void* const> buffers) {
  CRAFT_CUDA_SCOPED_DEVICE(config_.device);
  return SumTerms(buffers.size(), [&](size_t begin, int count, unsigned long long* sums) {
    return internal::CudaStatus(internal::LaunchChecksumTerms(buffers.data() + begin, count,
                                                              config_.shape.bytes(), sums, stream_),
                                "checksum kernel");
  });
}

absl::StatusOr<std::vector<uint64_t>> DeviceSlots::ExpectedChecksums(
    absl::Span<const ExpertId> experts) {
  CRAFT_CUDA_SCOPED_DEVICE(config_.device);
  std::vector<uint64_t> keys;
  keys.reserve(experts.size());
  for (const ExpertId& id : experts) keys.push_back(ExpertKey(id.layer, id.expert));
  return SumTerms(keys.size(), [&](size_t begin, int count, unsigned long long* sums) {
    return internal::CudaStatus(
        internal::LaunchExpectedChecksumTerms(keys.data() + begin, count, config_.shape.bytes(),
                                              sums, stream_),
        "expected-checksum kernel");
  });
}

absl::StatusOr<int> DeviceSlots::AcquireStaging() {
  if (free_staging_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "all ", config_.staging_buffers, " staging buffers of GPU ", config_.device, " in use"));
  }
  const int staging = free_staging_.back();
  free_staging_.pop_back();
  acquired_[staging] = true;
  return staging;
}

absl::Status DeviceSlots::CheckAcquired(int staging) const {
  if (staging < 0 || staging >= static_cast<int>(acquired_.size()) || !acquired_[staging]) {
    return absl::FailedPreconditionError(
        absl::StrCat("buffer ", staging, " is not an acquired staging buffer"));
  }
  return absl::OkStatus();
}

void* DeviceSlots::staging_data(int staging) const { return buffer(staging); }

absl::Status DeviceSlots::ReleaseStaging(int staging) {
  CRAFT_RETURN_IF_ERROR(CheckAcquired(staging));
  acquired_[staging] = false;
  free_staging_.push_back(staging);
  return absl::OkStatus();
}

absl::Status DeviceSlots::Synchronize() {
  CRAFT_CUDA_SCOPED_DEVICE(config_.device);
  CRAFT_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace craft::gpu
