#include "gpu_worker/fault_injection.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "common/logging.h"
#include "gpu_worker/expert_weights.h"
#include "gpu_worker/random.h"

namespace craft::gpu_worker {

bool FaultOptions::any() const {
  return exit_on_prepare || fail_prepare_probability > 0 || stage_delay > absl::ZeroDuration() ||
         corrupt_served;
}

absl::Status FaultOptions::Validate() const {
  if (!(fail_prepare_probability >= 0 && fail_prepare_probability <= 1)) {
    return absl::InvalidArgumentError("fail_prepare_probability must be in [0, 1]");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- staging

FaultyStagingEngine::FaultyStagingEngine(StagingEngine* inner, FaultOptions faults, Clock* clock)
    : inner_(inner), faults_(faults), clock_(clock) {}

absl::StatusOr<StageResult> FaultyStagingEngine::Execute(const StagePlan& plan, absl::Time deadline,
                                                         const std::atomic<bool>& cancelled) {
  if (faults_.exit_on_prepare) {
    CRAFT_LOG(WARNING) << "exit_on_prepare: exiting on prepare of " << plan.version;
    std::_Exit(kExitOnPrepareStatus);
  }
  if (faults_.fail_prepare_probability > 0) {
    const uint64_t draw = HashWords({faults_.seed, Fnv1a64(plan.version)}) % 1000000;
    if (static_cast<double>(draw) < faults_.fail_prepare_probability * 1000000) {
      return absl::InternalError("injected failure (--fail_prepare_probability)");
    }
  }
  // A slow prepare: sleep in slices so an Abort still cancels promptly.
  const absl::Time until = clock_->Now() + faults_.stage_delay;
  while (clock_->Now() < until && !cancelled) {
    absl::SleepFor(std::min(absl::Milliseconds(10), until - clock_->Now()));
  }
  return inner_->Execute(plan, deadline, cancelled);
}

// ---------------------------------------------------------------- store

int64_t CorruptingExpertStore::bytes_per_expert() const { return inner_->bytes_per_expert(); }

int64_t CorruptingExpertStore::capacity_bytes() const { return inner_->capacity_bytes(); }

std::optional<int64_t> CorruptingExpertStore::staging_headroom_bytes() const {
  return inner_->staging_headroom_bytes();
}

std::string CorruptingExpertStore::serving_version() const { return inner_->serving_version(); }

std::string CorruptingExpertStore::staging_version() const { return inner_->staging_version(); }

absl::Status CorruptingExpertStore::LoadServing(const LocalLayout& layout) {
  return inner_->LoadServing(layout);
}

absl::Status CorruptingExpertStore::BeginStaging(const LocalLayout& layout) {
  return inner_->BeginStaging(layout);
}

absl::Status CorruptingExpertStore::WriteStaging(absl::string_view version, int layer, int slot,
                                                 int64_t offset, absl::string_view data) {
  return inner_->WriteStaging(version, layer, slot, offset, data);
}

absl::Status CorruptingExpertStore::CopyToStaging(absl::string_view version, int layer,
                                                  int serving_slot, int staging_slot) {
  return inner_->CopyToStaging(version, layer, serving_slot, staging_slot);
}

absl::Status CorruptingExpertStore::LoadToStaging(absl::string_view version, int layer, int slot,
                                                  int expert) {
  return inner_->LoadToStaging(version, layer, slot, expert);
}

absl::Status CorruptingExpertStore::Flip(absl::string_view version) {
  return inner_->Flip(version);
}

absl::Status CorruptingExpertStore::DropStaging(absl::string_view version) {
  return inner_->DropStaging(version);
}

absl::StatusOr<std::string> CorruptingExpertStore::ReadServingExpert(absl::string_view version,
                                                                     int layer, int global_slot,
                                                                     int expert) const {
  absl::StatusOr<std::string> bytes =
      inner_->ReadServingExpert(version, layer, global_slot, expert);
  if (bytes.ok() && !bytes->empty()) (*bytes)[0] ^= 0x5a;
  return bytes;
}

absl::StatusOr<uint64_t> CorruptingExpertStore::SlotChecksum(absl::string_view version, int layer,
                                                             int slot) const {
  return inner_->SlotChecksum(version, layer, slot);
}

uint64_t CorruptingExpertStore::ExpectedChecksum(int layer, int expert) const {
  return inner_->ExpectedChecksum(layer, expert);
}

// ---------------------------------------------------------------- backend

FaultInjectingBackend::FaultInjectingBackend(std::unique_ptr<Backend> inner, FaultOptions faults,
                                             Clock* clock, Stager::Options staging)
    : inner_(std::move(inner)),
      corrupt_served_(faults.corrupt_served),
      corrupting_store_(inner_->store()),
      inner_staging_(inner_.get(), clock, staging),
      faulty_staging_(inner_staging_.engine(), faults, clock) {}

ExpertStore* FaultInjectingBackend::store() {
  return corrupt_served_ ? &corrupting_store_ : inner_->store();
}

std::unique_ptr<Backend> WithFaults(std::unique_ptr<Backend> backend, const FaultOptions& faults,
                                    Clock* clock, Stager::Options staging) {
  if (!faults.any()) return backend;
  return std::make_unique<FaultInjectingBackend>(std::move(backend), faults, clock, staging);
}

}  // namespace craft::gpu_worker
