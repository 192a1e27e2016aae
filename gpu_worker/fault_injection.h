// Faults on purpose, for the integration tests and the fault demos: a worker
// that dies on a Prepare, fails or delays its stagings, or serves corrupted
// experts to its peers. The worker itself has no fault branches: its backend
// is wrapped instead (craft-worker's fault flags do it), so that it stages
// through a FaultyStagingEngine and its peers read its experts through a
// CorruptingExpertStore.
//
//   FaultOptions faults;
//   faults.fail_prepare_probability = 0.5;
//   backend = WithFaults(std::move(backend), faults, clock, {options.fetch_timeout});
//   Worker::Create(options, std::move(backend), ...);
//
// Thread-safety: as what they wrap.
#ifndef CRAFT_GPU_WORKER_FAULT_INJECTION_H_
#define CRAFT_GPU_WORKER_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/stager.h"

namespace craft::gpu_worker {

struct FaultOptions {
  // Exit the process (status kExitOnPrepareStatus) when a Prepare starts
  // staging.
  bool exit_on_prepare = false;
  // Fail a Prepare's staging with this probability, decided by a hash of
  // `seed` and the version (so a run is reproducible).
  double fail_prepare_probability = 0;
  uint64_t seed = 1;
  // Wait this long (cancellably) before staging: a slow prepare.
  absl::Duration stage_delay = absl::ZeroDuration();
  // Serve corrupted expert bytes to peers (transfer_service.h).
  bool corrupt_served = false;

  // Whether any fault is asked for.
  bool any() const;
  // INVALID_ARGUMENT for a probability outside [0, 1].
  absl::Status Validate() const;
};

inline constexpr int kExitOnPrepareStatus = 3;

// Stages with `inner` after the staging faults of `faults`: exit, fail
// (INTERNAL "injected failure"), or wait first (cut short by cancellation).
class FaultyStagingEngine : public StagingEngine {
 public:
  // `inner` and `clock` are not owned and must outlive this.
  FaultyStagingEngine(StagingEngine* inner, FaultOptions faults, Clock* clock);

  absl::StatusOr<StageResult> Execute(const StagePlan& plan, absl::Time deadline,
                                      const std::atomic<bool>& cancelled) override;

 private:
  StagingEngine* const inner_;
  const FaultOptions faults_;
  Clock* const clock_;
};

// `inner` in every respect except that ReadServingExpert, what a peer
// fetches, returns the expert with its first byte flipped, as a source with
// corrupted weights would: the peer's checksum of its weights then fails.
class CorruptingExpertStore : public ExpertStore {
 public:
  // `inner` is not owned and must outlive this.
  explicit CorruptingExpertStore(ExpertStore* inner) : inner_(inner) {}

  int64_t bytes_per_expert() const override;
  int64_t capacity_bytes() const override;
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
  ExpertStore* const inner_;
};

// `inner` with the faults of `faults`: its staging engine (its own, or one
// expert by expert with `staging`'s options) behind a FaultyStagingEngine,
// and its store behind a CorruptingExpertStore when corrupt_served is set.
class FaultInjectingBackend : public Backend {
 public:
  FaultInjectingBackend(std::unique_ptr<Backend> inner, FaultOptions faults, Clock* clock,
                        Stager::Options staging);

  absl::string_view name() const override { return inner_->name(); }
  ExpertStore* store() override;
  LoadCounter* counter() override { return inner_->counter(); }
  ExpertFetcher* fetcher() override { return inner_->fetcher(); }
  StagingEngine* staging_engine() override { return &faulty_staging_; }
  std::string transfer_group_id() override { return inner_->transfer_group_id(); }

 private:
  const std::unique_ptr<Backend> inner_;
  const bool corrupt_served_;
  CorruptingExpertStore corrupting_store_;
  BackendStaging inner_staging_;
  FaultyStagingEngine faulty_staging_;
};

// `backend` wrapped in a FaultInjectingBackend, or itself when `faults`
// asks for none.
std::unique_ptr<Backend> WithFaults(std::unique_ptr<Backend> backend, const FaultOptions& faults,
                                    Clock* clock, Stager::Options staging);

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_FAULT_INJECTION_H_
