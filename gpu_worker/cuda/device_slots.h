// Expert buffers on one GPU: for every MoE layer a fixed number of slots,
// each the full weights of one expert (ExpertShape: w1, w3, w2 back to back),
// plus a pool of free buffers to acquire and release; with the kernels that
// fill buffers with an expert's deterministic weights and checksum them.
// The MoE step emulator uses the slots; DeviceExpertStore (the worker's
// store, whose layouts change) uses only the pool.
//
//   SlotsConfig config;
//   config.device = 0;
//   config.slots_per_layer = {9, 9};  // DeepSeek-sized experts by default
//   config.staging_buffers = 4;
//   CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<DeviceSlots> slots, DeviceSlots::Create(config));
//   CRAFT_RETURN_IF_ERROR(slots->FillSlot(/*layer=*/0, /*slot=*/3, /*expert=*/17));
//   CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> sums, slots->Checksums({slots->slot_data(0, 3)}));
//
// Memory: one cudaMalloc at Create for every slot and staging buffer (each
// rounded up to 256 bytes), freed by the destructor; checksums allocate
// nothing.
//
// Thread-compatibility: not synchronised. One owner thread (the worker's
// control thread) calls the mutating methods; slot_data() pointers may be
// read by kernels on any stream. Every method makes the device current for
// its duration.
#ifndef CRAFT_GPU_WORKER_CUDA_DEVICE_SLOTS_H_
#define CRAFT_GPU_WORKER_CUDA_DEVICE_SLOTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu_worker/cuda/cuda_types.h"
#include "gpu_worker/cuda/expert_shape.h"

namespace craft::gpu {

struct SlotsConfig {
  int device = 0;
  ExpertShape shape;
  std::vector<int> slots_per_layer;  // this GPU's slots in every layer
  int staging_buffers = 0;
};

// A logical expert of a layer.
struct ExpertId {
  int layer = 0;
  int expert = 0;
};

class DeviceSlots {
 public:
  // Allocates and zeroes the memory. INVALID_ARGUMENT for a bad config,
  // RESOURCE_EXHAUSTED when the device lacks the memory, FAILED_PRECONDITION
  // without a usable device.
  static absl::StatusOr<std::unique_ptr<DeviceSlots>> Create(const SlotsConfig& config);
  ~DeviceSlots();
  DeviceSlots(const DeviceSlots&) = delete;
  DeviceSlots& operator=(const DeviceSlots&) = delete;

  int device() const { return config_.device; }
  const ExpertShape& shape() const { return config_.shape; }
  int num_layers() const { return static_cast<int>(slot_buffer_.size()); }
  int num_slots(int layer) const { return static_cast<int>(slot_buffer_[layer].size()); }

  // Device address of the expert in (layer, slot). Preconditions: in range.
  void* slot_data(int layer, int slot) const;

  // Fills (layer, slot) with the deterministic contents of `expert` of the
  // same layer (expert_hash.h). Enqueued on this object's stream.
  absl::Status FillSlot(int layer, int slot, int expert);
  // The same for any buffer of this object (a slot or an acquired staging
  // buffer, by its device address).
  absl::Status FillBuffer(void* buffer, ExpertId expert);

  // The checksums of device buffers of shape().bytes() each on this device
  // (slots, staging buffers). Waits for this object's stream, so it sees
  // earlier fills; a caller that wrote the buffers on another stream must
  // have waited for that work.
  absl::StatusOr<std::vector<uint64_t>> Checksums(absl::Span<void* const> buffers);

  // The checksums `experts` have once filled, computed on the device from the
  // fill rule alone (fast; HostExpectedChecksum is the CPU reference).
  absl::StatusOr<std::vector<uint64_t>> ExpectedChecksums(absl::Span<const ExpertId> experts);

  // Takes a free staging buffer. RESOURCE_EXHAUSTED when none is free.
  absl::StatusOr<int> AcquireStaging();
  // Device address of an acquired staging buffer.
  void* staging_data(int staging) const;
  // Returns an acquired staging buffer to the pool, its contents discarded.
  absl::Status ReleaseStaging(int staging);
  int free_staging() const { return static_cast<int>(free_staging_.size()); }

  // Waits for every fill and checksum enqueued by this object.
  absl::Status Synchronize();

 private:
  explicit DeviceSlots(const SlotsConfig& config);
  absl::Status Allocate();
  void* buffer(int index) const { return arena_ + index * stride_; }
  absl::Status CheckSlot(int layer, int slot) const;
  absl::Status CheckAcquired(int staging) const;
  // Checksums of `items` buffers whose terms `launch(begin, count, sums)`
  // enqueues on stream_, at most kChecksumBatch at a time, into the device
  // sums it is given (zeroed).
  absl::StatusOr<std::vector<uint64_t>> SumTerms(
      size_t items, absl::FunctionRef<absl::Status(size_t, int, unsigned long long*)> launch);

  const SlotsConfig config_;
  char* arena_ = nullptr;
  int64_t stride_ = 0;  // bytes between buffers
  CudaStream stream_ = nullptr;
  // Checksum term sums: one launch batch on the device and in pinned memory,
  // allocated once so that verifying a transfer allocates nothing.
  unsigned long long* sums_device_ = nullptr;
  unsigned long long* sums_host_ = nullptr;
  std::vector<std::vector<int>> slot_buffer_;  // [layer][slot] -> buffer index
  std::vector<int> free_staging_;              // buffer indices
  std::vector<bool> acquired_;                 // [buffer index]
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_DEVICE_SLOTS_H_
