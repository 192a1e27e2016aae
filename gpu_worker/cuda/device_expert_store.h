// The worker's ExpertStore (gpu_worker/backend.h) in GPU memory: a serving
// bank and at most one staging bank of expert slots, as the CPU store has,
// over one pool of expert buffers allocated once.
//
//   CRAFT_ASSIGN_OR_RETURN(auto store, DeviceExpertStore::Create(device, shape, 8 << 30));
//   CRAFT_RETURN_IF_ERROR(store->LoadServing(initial));  // fills on the device
//
// Slots are references to pool buffers, and a buffer may back several slots
// of both banks: expert weights never change in place, so a slot that keeps
// its expert, or copies one this GPU already holds (CopyToStaging), shares
// the serving buffer instead of copying 88 MB. Only experts that arrive from
// peers take new buffers; Flip and DropStaging return the buffers no slot
// references any more. The memory a layout change needs is therefore the
// experts it brings in, not a second copy of every slot.
//
// Capacity: the pool has capacity_bytes / (expert bytes rounded up to 256)
// buffers, allocated and zeroed at Create; the store never allocates again.
// BeginStaging cannot know how many buffers the staging will take, so
// RESOURCE_EXHAUSTED comes from the write or StagingBuffer that finds the
// pool empty.
//
// Contents and checksum are expert_hash.h's (a bf16 fill from the expert's
// key; the positional 64-bit checksum), computed by kernels; the expected
// checksums come from the fill rule on the device and are cached.
//
// Thread-safe: one mutex. Device work of the public methods is complete when
// they return, except that buffer addresses handed out (StagingBuffer,
// ServingBuffer) are for the caller's own streams, which must finish with
// them before the next Flip or DropStaging.
#ifndef CRAFT_GPU_WORKER_CUDA_DEVICE_EXPERT_STORE_H_
#define CRAFT_GPU_WORKER_CUDA_DEVICE_EXPERT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/cuda/device_slots.h"
#include "gpu_worker/cuda/expert_shape.h"

namespace craft::gpu {

class DeviceExpertStore : public gpu_worker::ExpertStore {
 public:
  // INVALID_ARGUMENT for a bad shape or a capacity below one expert;
  // RESOURCE_EXHAUSTED or FAILED_PRECONDITION from the device.
  static absl::StatusOr<std::unique_ptr<DeviceExpertStore>> Create(int device,
                                                                   const ExpertShape& shape,
                                                                   int64_t capacity_bytes);

  int device() const { return device_; }
  int pool_buffers() const { return pool_buffers_; }
  // Buffers no slot references.
  int free_buffers() const;

  // gpu_worker::ExpertStore.
  int64_t bytes_per_expert() const override { return bytes_per_expert_; }
  int64_t capacity_bytes() const override { return capacity_bytes_; }
  // The pool's free buffers: every arrival takes one.
  std::optional<int64_t> staging_headroom_bytes() const override {
    return int64_t{free_buffers()} * bytes_per_expert();
  }
  std::string serving_version() const override;
  std::string staging_version() const override;
  absl::Status LoadServing(const gpu_worker::LocalLayout& layout) override;
  absl::Status BeginStaging(const gpu_worker::LocalLayout& layout) override;
  absl::Status WriteStaging(absl::string_view version, int layer, int slot, int64_t offset,
                            absl::string_view data) override;
  absl::Status CopyToStaging(absl::string_view version, int layer, int serving_slot,
                             int staging_slot) override;
  absl::Status LoadToStaging(absl::string_view version, int layer, int slot, int expert) override;
  absl::Status Flip(absl::string_view version) override;
  absl::Status DropStaging(absl::string_view version) override;
  absl::StatusOr<std::string> ReadServingExpert(absl::string_view version, int layer,
                                                int global_slot, int expert) const override;
  absl::StatusOr<uint64_t> SlotChecksum(absl::string_view version, int layer,
                                        int slot) const override;
  uint64_t ExpectedChecksum(int layer, int expert) const override;

  // For transports that write and read device memory themselves (NCCL).
  // A buffer of its own for staging slot (layer, slot) of `version`, taken
  // from the pool (the slot's contents are then undefined until written).
  absl::StatusOr<void*> StagingBuffer(absl::string_view version, int layer, int slot);
  // The buffer of serving slot (layer, slot), to send from.
  absl::StatusOr<const void*> ServingBuffer(int layer, int slot) const;
  // Checksums of many staging slots of `version` in one pass (each slot
  // must have been written); pairs are (layer, local slot).
  absl::StatusOr<std::vector<uint64_t>> StagingChecksums(
      absl::string_view version, absl::Span<const std::pair<int, int>> slots);
  // ExpectedChecksum for many experts in one pass.
  absl::StatusOr<std::vector<uint64_t>> ExpectedChecksums(absl::Span<const ExpertId> experts);

 private:
  // One layout version: per layer and local slot, the pool buffer holding it
  // (kUnset: a staging slot not written yet).
  struct Bank {
    gpu_worker::LocalLayout layout;
    std::vector<std::vector<int>> buffers;
  };
  static constexpr int kUnset = -1;

  DeviceExpertStore(std::unique_ptr<DeviceSlots> pool, int64_t capacity_bytes);

  static Bank EmptyBank(const gpu_worker::LocalLayout& layout);
  absl::StatusOr<Bank*> StagingFor(absl::string_view version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<const Bank*> BankFor(absl::string_view version) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A fresh pool buffer with one reference.
  absl::StatusOr<int> TakeBuffer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reference(int buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unreference(int buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnreferenceBank(const Bank& bank) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Points staging slot (layer, slot) at a buffer of its own (unshared).
  absl::StatusOr<int> OwnStagingSlot(Bank& bank, int layer, int slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<uint64_t>> ExpectedChecksumsLocked(
      absl::Span<const ExpertId> experts) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Fixed at Create, so read without mu_: copies of the pool's own, as the
  // pool is used under mu_ only.
  const int device_;
  const int64_t bytes_per_expert_;
  const int pool_buffers_;
  const int64_t capacity_bytes_;

  mutable absl::Mutex mu_;
  // The pool: a DeviceSlots without slots, whose staging buffers are this
  // store's expert buffers (it owns the memory, the fill and checksum
  // kernels). Not thread-safe itself: used under mu_ only.
  const std::unique_ptr<DeviceSlots> pool_ ABSL_PT_GUARDED_BY(mu_);
  std::vector<int> references_ ABSL_GUARDED_BY(mu_);  // per pool buffer
  Bank serving_ ABSL_GUARDED_BY(mu_);
  std::optional<Bank> staging_ ABSL_GUARDED_BY(mu_);
  mutable absl::flat_hash_map<std::pair<int, int>, uint64_t> expected_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_DEVICE_EXPERT_STORE_H_
