// The CPU backend: expert slots in host memory, a loop for load counting, and
// whatever ExpertFetcher it is given (the gRPC one in production,
// transfer_client.h; a fake in tests). It stands in for a GPU on machines
// without one and is the reference for what a device backend must do.
//
//   auto backend = std::make_unique<CpuBackend>(/*bytes_per_expert=*/4096,
//                                               /*capacity_bytes=*/1 << 30,
//                                               std::make_unique<GrpcExpertFetcher>());
#ifndef CRAFT_GPU_WORKER_CPU_BACKEND_H_
#define CRAFT_GPU_WORKER_CPU_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gpu_worker/backend.h"

namespace craft::gpu_worker {

// Host-memory slot banks. Thread-safe (one mutex; ReadServingExpert copies
// the expert out under it, so a concurrent Flip cannot tear a read).
class CpuExpertStore : public ExpertStore {
 public:
  // `capacity_bytes` 0 means unlimited.
  CpuExpertStore(int64_t bytes_per_expert, int64_t capacity_bytes);

  int64_t bytes_per_expert() const override { return bytes_per_expert_; }
  int64_t capacity_bytes() const override { return capacity_bytes_; }
  std::optional<int64_t> staging_headroom_bytes() const override;
  std::string serving_version() const override;
  std::string staging_version() const override;

  absl::Status LoadServing(const LocalLayout& layout) override;
  absl::Status BeginStaging(const LocalLayout& layout) override;
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

 private:
  // One layout version's slots: per layer, the slots' bytes back to back.
  struct Bank {
    LocalLayout layout;
    std::vector<std::string> layers;
    std::set<std::pair<int, int>> arrivals;  // staging: (layer, slot) admitted
  };

  Bank AllocateBank(const LocalLayout& layout) const;
  int64_t BankBytes(const LocalLayout& layout) const;
  // The bytes of a checked slot.
  absl::string_view SlotBytes(const Bank& bank, int layer, int slot) const;
  char* MutableSlotBytes(Bank& bank, int layer, int slot) const;
  // The staging bank when it holds `version`, else FAILED_PRECONDITION.
  absl::StatusOr<Bank*> StagingFor(absl::string_view version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts an expert arriving in staging slot (layer, slot) against the
  // headroom, as a device store allocates a buffer only for arrivals:
  // RESOURCE_EXHAUSTED when it does not fit. A slot counts once.
  absl::Status AdmitArrival(int layer, int slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t bytes_per_expert_;
  const int64_t capacity_bytes_;

  mutable absl::Mutex mu_;
  Bank serving_ ABSL_GUARDED_BY(mu_);
  std::optional<Bank> staging_ ABSL_GUARDED_BY(mu_);
};

// Routes and counts with a loop (the reference for device counters).
// Thread-compatible.
class CpuLoadCounter : public LoadCounter {
 public:
  absl::Status BeginWindow(int64_t window_id, const LocalLayout& mine,
                           const RoutingTable& routing) override;
  absl::Status Count(int layer, absl::Span<const int32_t> topk_ids, int top_k) override;
  absl::StatusOr<std::vector<std::vector<int64_t>>> EndWindow() override;

 private:
  int64_t window_id_ = 0;
  const RoutingTable* routing_ = nullptr;     // null outside a window
  std::vector<int> first_slot_;               // per layer
  std::vector<std::vector<int64_t>> counts_;  // [layer][local slot]
};

class CpuBackend : public Backend {
 public:
  CpuBackend(int64_t bytes_per_expert, int64_t capacity_bytes,
             std::unique_ptr<ExpertFetcher> fetcher);

  absl::string_view name() const override { return "cpu"; }
  ExpertStore* store() override { return &store_; }
  LoadCounter* counter() override { return &counter_; }
  ExpertFetcher* fetcher() override { return fetcher_.get(); }

 private:
  CpuExpertStore store_;
  CpuLoadCounter counter_;
  std::unique_ptr<ExpertFetcher> fetcher_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_CPU_BACKEND_H_
