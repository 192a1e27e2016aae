#include "gpu_worker/cuda/device_expert_store.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu_worker/cuda/cuda_check.h"

namespace craft::gpu {

using gpu_worker::LocalLayout;

namespace {

constexpr int64_t kAlignment = 256;  // DeviceSlots' stride between buffers

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceExpertStore>> DeviceExpertStore::Create(
    int device, const ExpertShape& shape, int64_t capacity_bytes) {
  CRAFT_RETURN_IF_ERROR(shape.Validate());
  const int64_t stride = (shape.bytes() + kAlignment - 1) / kAlignment * kAlignment;
  const int64_t buffers = capacity_bytes / stride;
  if (buffers < 1 || buffers > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("expert memory of ", capacity_bytes,
                                                   " bytes holds ", buffers, " experts of ",
                                                   shape.bytes(), " bytes"));
  }
  SlotsConfig config;
  config.device = device;
  config.shape = shape;
  config.staging_buffers = static_cast<int>(buffers);
  CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<DeviceSlots> pool, DeviceSlots::Create(config));
  return std::unique_ptr<DeviceExpertStore>(new DeviceExpertStore(std::move(pool), capacity_bytes));
}

DeviceExpertStore::DeviceExpertStore(std::unique_ptr<DeviceSlots> pool, int64_t capacity_bytes)
    : device_(pool->device()),
      bytes_per_expert_(pool->shape().bytes()),
      pool_buffers_(pool->free_staging()),
      capacity_bytes_(capacity_bytes),
      pool_(std::move(pool)),
      references_(pool_buffers_, 0) {}

int DeviceExpertStore::free_buffers() const {
  absl::MutexLock lock(&mu_);
  return pool_->free_staging();
}

std::string DeviceExpertStore::serving_version() const {
  absl::MutexLock lock(&mu_);
  return serving_.layout.version;
}

std::string DeviceExpertStore::staging_version() const {
  absl::MutexLock lock(&mu_);
  return staging_ ? staging_->layout.version : "";
}

DeviceExpertStore::Bank DeviceExpertStore::EmptyBank(const LocalLayout& layout) {
  Bank bank{layout, {}};
  for (const gpu_worker::LocalLayer& layer : layout.layers) {
    bank.buffers.emplace_back(layer.num_slots(), kUnset);
  }
  return bank;
}

absl::StatusOr<DeviceExpertStore::Bank*> DeviceExpertStore::StagingFor(absl::string_view version) {
  CRAFT_RETURN_IF_ERROR(gpu_worker::CheckStaged(version, staging_ ? staging_->layout.version : ""));
  return &*staging_;
}

absl::StatusOr<const DeviceExpertStore::Bank*> DeviceExpertStore::BankFor(
    absl::string_view version) const {
  if (version == serving_.layout.version) return &serving_;
  if (staging_ && version == staging_->layout.version) return &*staging_;
  return absl::NotFoundError(absl::StrCat("version ", version, " is neither serving (",
                                          serving_.layout.version, ") nor staged"));
}

absl::StatusOr<int> DeviceExpertStore::TakeBuffer() {
  absl::StatusOr<int> buffer = pool_->AcquireStaging();
  if (!buffer.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("expert memory full: all ", references_.size(), " buffers of ",
                     capacity_bytes_, " bytes on GPU ", pool_->device(), " hold experts"));
  }
  references_[*buffer] = 1;
  return buffer;
}

void DeviceExpertStore::Reference(int buffer) { ++references_[buffer]; }

void DeviceExpertStore::Unreference(int buffer) {
  if (buffer == kUnset) return;
  if (--references_[buffer] == 0) pool_->ReleaseStaging(buffer).IgnoreError();  // acquired
}

void DeviceExpertStore::UnreferenceBank(const Bank& bank) {
  for (const std::vector<int>& layer : bank.buffers) {
    for (int buffer : layer) Unreference(buffer);
  }
}

absl::Status DeviceExpertStore::LoadServing(const LocalLayout& layout) {
  absl::MutexLock lock(&mu_);
  if (staging_) {
    UnreferenceBank(*staging_);
    staging_.reset();
  }
  UnreferenceBank(serving_);
  serving_ = EmptyBank(layout);
  for (int l = 0; l < layout.num_layers(); ++l) {
    for (int s = 0; s < layout.layers[l].num_slots(); ++s) {
      absl::StatusOr<int> buffer = TakeBuffer();
      if (!buffer.ok()) {
        UnreferenceBank(serving_);
        serving_ = Bank{};
        return buffer.status();
      }
      serving_.buffers[l][s] = *buffer;
      CRAFT_RETURN_IF_ERROR(
          pool_->FillBuffer(pool_->staging_data(*buffer), {l, layout.layers[l].experts[s]}));
    }
  }
  return pool_->Synchronize();
}

absl::Status DeviceExpertStore::BeginStaging(const LocalLayout& layout) {
  absl::MutexLock lock(&mu_);
  if (layout.version == serving_.layout.version ||
      layout.num_layers() != serving_.layout.num_layers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot stage version ", layout.version, " with ", layout.num_layers(),
                     " layers over serving version ", serving_.layout.version, " with ",
                     serving_.layout.num_layers()));
  }
  if (staging_) UnreferenceBank(*staging_);
  staging_ = EmptyBank(layout);
  return absl::OkStatus();
}

absl::StatusOr<int> DeviceExpertStore::OwnStagingSlot(Bank& bank, int layer, int slot) {
  int& buffer = bank.buffers[layer][slot];
  if (buffer != kUnset && references_[buffer] == 1) return buffer;
  CRAFT_ASSIGN_OR_RETURN(const int fresh, TakeBuffer());
  Unreference(buffer);  // a shared buffer stays with its other slots
  buffer = fresh;
  return buffer;
}

absl::Status DeviceExpertStore::WriteStaging(absl::string_view version, int layer, int slot,
                                             int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  if (offset < 0 || offset + static_cast<int64_t>(data.size()) > bytes_per_expert()) {
    return absl::OutOfRangeError(absl::StrCat("bytes [", offset, ", ", offset + data.size(),
                                              ") are outside an expert of ", bytes_per_expert()));
  }
  CRAFT_ASSIGN_OR_RETURN(const int buffer, OwnStagingSlot(*bank, layer, slot));
  CRAFT_CUDA_SCOPED_DEVICE(pool_->device());
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpy(static_cast<char*>(pool_->staging_data(buffer)) + offset,
                                        data.data(), data.size(), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status DeviceExpertStore::CopyToStaging(absl::string_view version, int layer,
                                              int serving_slot, int staging_slot) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, staging_slot));
  CRAFT_RETURN_IF_ERROR(serving_.layout.CheckSlot(layer, serving_slot));
  const int source = serving_.buffers[layer][serving_slot];
  int& target = bank->buffers[layer][staging_slot];
  Reference(source);  // before Unreference: the target may already share it
  Unreference(target);
  target = source;
  return absl::OkStatus();
}

absl::Status DeviceExpertStore::LoadToStaging(absl::string_view version, int layer, int slot,
                                              int expert) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  CRAFT_ASSIGN_OR_RETURN(const int buffer, OwnStagingSlot(*bank, layer, slot));
  CRAFT_RETURN_IF_ERROR(pool_->FillBuffer(pool_->staging_data(buffer), {layer, expert}));
  return pool_->Synchronize();
}

absl::Status DeviceExpertStore::Flip(absl::string_view version) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  for (int l = 0; l < bank->layout.num_layers(); ++l) {
    for (int s = 0; s < bank->layout.layers[l].num_slots(); ++s) {
      if (bank->buffers[l][s] == kUnset) {
        return absl::FailedPreconditionError(absl::StrCat("version ", version, " layer ", l,
                                                          " local slot ", s, " was never filled"));
      }
    }
  }
  UnreferenceBank(serving_);
  serving_ = *std::move(staging_);
  staging_.reset();
  return absl::OkStatus();
}

absl::Status DeviceExpertStore::DropStaging(absl::string_view version) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  UnreferenceBank(*bank);
  staging_.reset();
  return absl::OkStatus();
}

absl::StatusOr<std::string> DeviceExpertStore::ReadServingExpert(absl::string_view version,
                                                                 int layer, int global_slot,
                                                                 int expert) const {
  absl::MutexLock lock(&mu_);
  if (version != serving_.layout.version) {
    return absl::NotFoundError(absl::StrCat("version ", version, " is not serving (serving ",
                                            serving_.layout.version, ")"));
  }
  CRAFT_ASSIGN_OR_RETURN(const int local, serving_.layout.Resolve(layer, global_slot, expert));
  std::string bytes(bytes_per_expert(), '\0');
  CRAFT_CUDA_SCOPED_DEVICE(pool_->device());
  CRAFT_CUDA_RETURN_IF_ERROR(cudaMemcpy(bytes.data(),
                                        pool_->staging_data(serving_.buffers[layer][local]),
                                        bytes.size(), cudaMemcpyDeviceToHost));
  return bytes;
}

absl::StatusOr<uint64_t> DeviceExpertStore::SlotChecksum(absl::string_view version, int layer,
                                                         int slot) const {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(const Bank* bank, BankFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  const int buffer = bank->buffers[layer][slot];
  if (buffer == kUnset) {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", layer, " local slot ", slot, " of ", version, " is not filled"));
  }
  void* const data = pool_->staging_data(buffer);
  CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> sums, pool_->Checksums({&data, 1}));
  return sums[0];
}

absl::StatusOr<std::vector<uint64_t>> DeviceExpertStore::ExpectedChecksumsLocked(
    absl::Span<const ExpertId> experts) const {
  std::vector<ExpertId> missing;
  for (const ExpertId& id : experts) {
    if (!expected_.contains({id.layer, id.expert})) missing.push_back(id);
  }
  if (!missing.empty()) {
    CRAFT_ASSIGN_OR_RETURN(std::vector<uint64_t> sums, pool_->ExpectedChecksums(missing));
    for (size_t i = 0; i < missing.size(); ++i) {
      expected_[{missing[i].layer, missing[i].expert}] = sums[i];
    }
  }
  std::vector<uint64_t> result;
  result.reserve(experts.size());
  for (const ExpertId& id : experts) result.push_back(expected_.at({id.layer, id.expert}));
  return result;
}

uint64_t DeviceExpertStore::ExpectedChecksum(int layer, int expert) const {
  absl::MutexLock lock(&mu_);
  const ExpertId id{layer, expert};
  absl::StatusOr<std::vector<uint64_t>> sums = ExpectedChecksumsLocked({&id, 1});
  // A device that cannot compute it cannot have a slot that matches either:
  // 0 makes the comparison fail, and the caller reports the mismatch.
  return sums.ok() ? (*sums)[0] : 0;
}

absl::StatusOr<std::vector<uint64_t>> DeviceExpertStore::ExpectedChecksums(
    absl::Span<const ExpertId> experts) {
  absl::MutexLock lock(&mu_);
  return ExpectedChecksumsLocked(experts);
}

absl::StatusOr<void*> DeviceExpertStore::StagingBuffer(absl::string_view version, int layer,
                                                       int slot) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
  CRAFT_ASSIGN_OR_RETURN(const int buffer, OwnStagingSlot(*bank, layer, slot));
  return pool_->staging_data(buffer);
}

absl::StatusOr<const void*> DeviceExpertStore::ServingBuffer(int layer, int slot) const {
  absl::MutexLock lock(&mu_);
  CRAFT_RETURN_IF_ERROR(serving_.layout.CheckSlot(layer, slot));
  return static_cast<const void*>(pool_->staging_data(serving_.buffers[layer][slot]));
}

absl::StatusOr<std::vector<uint64_t>> DeviceExpertStore::StagingChecksums(
    absl::string_view version, absl::Span<const std::pair<int, int>> slots) {
  absl::MutexLock lock(&mu_);
  CRAFT_ASSIGN_OR_RETURN(Bank * bank, StagingFor(version));
  std::vector<void*> buffers;
  buffers.reserve(slots.size());
  for (const auto& [layer, slot] : slots) {
    CRAFT_RETURN_IF_ERROR(bank->layout.CheckSlot(layer, slot));
    const int buffer = bank->buffers[layer][slot];
    if (buffer == kUnset) {
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", layer, " local slot ", slot, " of ", version, " is not filled"));
    }
    buffers.push_back(pool_->staging_data(buffer));
  }
  return pool_->Checksums(buffers);
}

}  // namespace craft::gpu
