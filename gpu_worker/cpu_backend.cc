#include "gpu_worker/cpu_backend.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "gpu_worker/expert_weights.h"

namespace craft::gpu_worker {

CpuExpertStore::CpuExpertStore(int64_t bytes_per_expert, int64_t capacity_bytes)
    : bytes_per_expert_(bytes_per_expert), capacity_bytes_(capacity_bytes) {}

std::string CpuExpertStore::serving_version() const {
  absl::MutexLock lock(&mu_);
  return serving_.layout.version;
}

std::string CpuExpertStore::staging_version() const {
  absl::MutexLock lock(&mu_);
  return staging_ ? staging_->layout.version : "";
}

int64_t CpuExpertStore::BankBytes(const LocalLayout& layout) const {
  return int64_t{layout.total_slots()} * bytes_per_expert_;
}

CpuExpertStore::Bank CpuExpertStore::AllocateBank(const LocalLayout& layout) const {
  Bank bank{layout, {}, {}};
  bank.layers.reserve(layout.layers.size());
  for (const LocalLayer& layer : layout.layers) {
    bank.layers.emplace_back(static_cast<size_t>(layer.num_slots() * bytes_per_expert_), '\0');
  }
  return bank;
}

absl::string_view CpuExpertStore::SlotBytes(const Bank& bank, int layer, int slot) const {
  return absl::string_view(bank.layers[layer]).substr(slot * bytes_per_expert_, bytes_per_expert_);
}

char* CpuExpertStore::MutableSlotBytes(Bank& bank, int layer, int slot) const {
  return bank.layers[layer].data() + slot * bytes_per_expert_;
}

absl::StatusOr<CpuExpertStore::Bank*> CpuExpertStore::StagingFor(absl::string_view version) {
  CRAFT_RETURN_IF_ERROR(CheckStaged(version, staging_ ? staging_->layout.version : ""));
  return &*staging_;
}

std::optional<int64_t> CpuExpertStore::staging_headroom_bytes() const {
  if (capacity_bytes_ == 0) return std::nullopt;
  absl::MutexLock lock(&mu_);
  return std::max<int64_t>(0, capacity_bytes_ - BankBytes(serving_.layout));
}

absl::Status CpuExpertStore::AdmitArrival(int layer, int slot) {
  if (capacity_bytes_ == 0 || staging_->arrivals.count({layer, slot}) > 0) return absl::OkStatus();
  const int64_t need =
      BankBytes(serving_.layout) + int64_t(staging_->arrivals.size() + 1) * bytes_per_expert_;
  if (need > capacity_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "staging ", staging_->layout.version, ": expert ", staging_->arrivals.size() + 1,
        " to arrive does not fit: serving plus arrivals need ", need, " bytes, capacity is ",
        capacity_bytes_));
  }
  staging_->arrivals.insert({layer, slot});
  return absl::OkStatus();
}

absl::Status CpuExpertStore::LoadServing(const LocalLayout& layout) {
  const int64_t need = BankBytes(layout);
  if (capacity_bytes_ > 0 && need > capacity_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("version ", layout.version, " needs ", need,
                                                     " bytes, capacity is ", capacity_bytes_));
  }
  Bank bank = AllocateBank(layout);
  for (int l = 0; l < layout.num_layers(); ++l) {
    for (int s = 0; s < layout.layers[l].num_slots(); ++s) {
      FillExpertWeights(l, layout.layers[l].experts[s],
                        absl::MakeSpan(MutableSlotBytes(bank, l, s), bytes_per_expert_));
    }
  }
  absl::MutexLock lock(&mu_);
  std::swap(serving_, bank);
  staging_.reset();
  return absl::OkStatus();
}

absl::Status CpuExpertStore::BeginStaging(const LocalLayout& layout) {
  absl::MutexLock lock(&mu_);
  if (layout.version.empty() || layout.version == serving_.layout.version) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot stage version '", layout.version, "': it is empty or serving"));
  }
  if (layout.num_layers() != serving_.layout.num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("version ", layout.version, " has ",
                                                   layout.num_layers(), " layers, serving has ",
                                                   serving_.layout.num_layers()));
  }
  staging_ = AllocateBank(layout);
  return absl::OkStatus();
}

absl::Status CpuExpertStore::WriteStaging(absl::string_view version, int layer, int slot,
                                          int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  if (offset < 0 || offset > bytes_per_expert_ ||
      static_cast<int64_t>(data.size()) > bytes_per_expert_ - offset) {
    return absl::OutOfRangeError(absl::StrCat("write of ", data.size(), " bytes at offset ", offset,
                                              " overruns a ", bytes_per_expert_, "-byte expert"));
  }
  CRAFT_RETURN_IF_ERROR(AdmitArrival(layer, slot));
  std::memcpy(MutableSlotBytes(*bank, layer, slot) + offset, data.data(), data.size());
  return absl::OkStatus();
}

absl::Status CpuExpertStore::CopyToStaging(absl::string_view version, int layer, int serving_slot,
                                           int staging_slot) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(serving_.layout.CheckSlot(layer, serving_slot));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, staging_slot));
  const absl::string_view from = SlotBytes(serving_, layer, serving_slot);
  std::memcpy(MutableSlotBytes(*bank, layer, staging_slot), from.data(), from.size());
  return absl::OkStatus();
}

absl::Status CpuExpertStore::LoadToStaging(absl::string_view version, int layer, int slot,
                                           int expert) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  CRAFT_RETURN_IF_ERROR(AdmitArrival(layer, slot));
  FillExpertWeights(layer, expert,
                    absl::MakeSpan(MutableSlotBytes(*bank, layer, slot), bytes_per_expert_));
  return absl::OkStatus();
}

absl::Status CpuExpertStore::Flip(absl::string_view version) {
  Bank old;  // freed after the lock is released
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  old = std::exchange(serving_, std::move(*bank));
  staging_.reset();
  return absl::OkStatus();
}

absl::Status CpuExpertStore::DropStaging(absl::string_view version) {
  std::optional<Bank> old;
  absl::MutexLock lock(&mu_);
  CRAFT_RETURN_IF_ERROR(StagingFor(version).status());
  old = std::exchange(staging_, std::nullopt);
  return absl::OkStatus();
}

absl::StatusOr<std::string> CpuExpertStore::ReadServingExpert(absl::string_view version, int layer,
                                                              int global_slot, int expert) const {
  absl::MutexLock lock(&mu_);
  if (version != serving_.layout.version) {
    return absl::NotFoundError(absl::StrCat(
        "version ", version, " is not served here (serving: ", serving_.layout.version, ")"));
  }
  CRAFT_ASSIGN_OR_RETURN(const int slot, serving_.layout.Resolve(layer, global_slot, expert));
  return std::string(SlotBytes(serving_, layer, slot));
}

absl::StatusOr<uint64_t> CpuExpertStore::SlotChecksum(absl::string_view version, int layer,
                                                      int slot) const {
  absl::MutexLock lock(&mu_);
  const Bank* bank = nullptr;
  if (!version.empty() && version == serving_.layout.version) {
    bank = &serving_;
  } else if (staging_ && version == staging_->layout.version) {
    bank = &*staging_;
  } else {
    return absl::NotFoundError(absl::StrCat("version ", version, " is neither serving nor staged"));
  }
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  return Fnv1a64(SlotBytes(*bank, layer, slot));
}

uint64_t CpuExpertStore::ExpectedChecksum(int layer, int expert) const {
  return gpu_worker::ExpectedChecksum(layer, expert, bytes_per_expert_);
}

absl::Status CpuLoadCounter::BeginWindow(int64_t window_id, const LocalLayout& mine,
                                         const RoutingTable& routing) {
  CRAFT_RETURN_IF_ERROR(CheckWindowLayouts(mine, routing));
  window_id_ = window_id;
  routing_ = &routing;
  first_slot_.clear();
  counts_.clear();
  for (const LocalLayer& layer : mine.layers) {
    first_slot_.push_back(layer.first_slot);
    counts_.emplace_back(layer.num_slots(), 0);
  }
  return absl::OkStatus();
}

absl::Status CpuLoadCounter::Count(int layer, absl::Span<const int32_t> topk_ids, int top_k) {
  if (routing_ == nullptr) return absl::FailedPreconditionError("no window is open");
  CRAFT_RETURN_IF_ERROR(
      CheckRouterChoices(layer, static_cast<int>(counts_.size()), topk_ids, top_k));
  std::vector<int64_t>& counts = counts_[layer];
  const int first = first_slot_[layer];
  const int num_experts = routing_->num_experts();
  for (size_t i = 0; i < topk_ids.size(); ++i) {
    const int32_t expert = topk_ids[i];
    if (expert < 0 || expert >= num_experts) continue;
    const int slot = routing_->Route(layer, expert, window_id_, static_cast<int>(i / top_k),
                                     static_cast<int>(i % top_k));
    const int local = slot - first;
    if (local >= 0 && local < static_cast<int>(counts.size())) ++counts[local];
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<int64_t>>> CpuLoadCounter::EndWindow() {
  if (routing_ == nullptr) return absl::FailedPreconditionError("no window is open");
  routing_ = nullptr;
  first_slot_.clear();
  return std::exchange(counts_, {});
}

CpuBackend::CpuBackend(int64_t bytes_per_expert, int64_t capacity_bytes,
                       std::unique_ptr<ExpertFetcher> fetcher)
    : store_(bytes_per_expert, capacity_bytes), fetcher_(std::move(fetcher)) {}

}  // namespace craft::gpu_worker
