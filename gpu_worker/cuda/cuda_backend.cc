#include "gpu_worker/cuda/cuda_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace craft::gpu {

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const CudaBackendOptions& options, std::unique_ptr<gpu_worker::ExpertFetcher> fetcher) {
  if (options.nranks < 1 || options.rank < 0 || options.rank >= options.nranks) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is not one of ", options.nranks));
  }
  CRAFT_ASSIGN_OR_RETURN(
      std::unique_ptr<DeviceExpertStore> store,
      DeviceExpertStore::Create(options.device, options.shape, options.capacity_bytes));
  CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<DeviceLoadCounter> counter,
                         DeviceLoadCounter::Create(options.device));
  return std::unique_ptr<CudaBackend>(
      new CudaBackend(options, std::move(store), std::move(counter), std::move(fetcher)));
}

CudaBackend::CudaBackend(const CudaBackendOptions& options,
                         std::unique_ptr<DeviceExpertStore> store,
                         std::unique_ptr<DeviceLoadCounter> counter,
                         std::unique_ptr<gpu_worker::ExpertFetcher> fetcher)
    : rank_(options.rank),
      store_(std::move(store)),
      counter_(std::move(counter)),
      fetcher_(std::move(fetcher)),
      engine_(std::make_unique<NcclStagingEngine>(store_.get(), options.rank, options.nranks,
                                                  options.transfer)) {}

std::string CudaBackend::transfer_group_id() {
  if (rank_ != 0) return "";
  absl::MutexLock lock(&mu_);
  const int aborts = engine_->aborts();
  if (!group_id_.empty() && aborts == aborts_seen_) return group_id_;
  absl::StatusOr<NcclId> id = NewNcclId();
  if (!id.ok()) {
    // Without an id no Prepare can move experts; they fail and say so, and
    // the next hello tries again.
    CRAFT_LOG(ERROR) << "cannot create a weight-transfer group id: " << id.status();
    return "";
  }
  group_id_.assign(id->bytes.begin(), id->bytes.end());
  aborts_seen_ = aborts;
  return group_id_;
}

}  // namespace craft::gpu
