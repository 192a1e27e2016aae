// The worker's CUDA backend (gpu_worker/backend.h): expert slots in device
// memory (DeviceExpertStore), load counting by a kernel (DeviceLoadCounter)
// and layout changes staged over NCCL (NcclStagingEngine). The gRPC fetcher
// stays as the ExpertFetcher, so peers can still read an expert over
// ExpertTransfer (the store copies it out of the device).
//
//   CudaBackendOptions options;
//   options.device = 0;
//   options.shape = {.hidden = 7168, .inter = 2048};
//   options.capacity_bytes = int64_t{40} << 30;
//   options.rank = gpu;
//   options.nranks = num_gpus;
//   CRAFT_ASSIGN_OR_RETURN(auto backend, CudaBackend::Create(options, std::move(fetcher)));
//
// Thread-safety: as the interfaces say; transfer_group_id() is thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_CUDA_BACKEND_H_
#define CRAFT_GPU_WORKER_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/cuda/device_expert_store.h"
#include "gpu_worker/cuda/device_load_counter.h"
#include "gpu_worker/cuda/expert_shape.h"
#include "gpu_worker/cuda/nccl_staging_engine.h"
#include "gpu_worker/cuda/nccl_transfer.h"

namespace craft::gpu {

struct CudaBackendOptions {
  int device = 0;
  ExpertShape shape;
  int64_t capacity_bytes = int64_t{1} << 30;  // expert memory: serving + staged
  int rank = 0;                               // global rank (the worker's --gpu)
  int nranks = 1;                             // GPUs of the cluster
  TransferOptions transfer;
};

class CudaBackend : public gpu_worker::Backend {
 public:
  // FAILED_PRECONDITION without a usable device, INVALID_ARGUMENT for a bad
  // shape or rank, RESOURCE_EXHAUSTED when the memory is not there.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(
      const CudaBackendOptions& options, std::unique_ptr<gpu_worker::ExpertFetcher> fetcher);

  absl::string_view name() const override { return "cuda"; }
  gpu_worker::ExpertStore* store() override { return store_.get(); }
  gpu_worker::LoadCounter* counter() override { return counter_.get(); }
  gpu_worker::ExpertFetcher* fetcher() override { return fetcher_.get(); }
  gpu_worker::StagingEngine* staging_engine() override { return engine_.get(); }
  std::string transfer_group_id() override;

 private:
  CudaBackend(const CudaBackendOptions& options, std::unique_ptr<DeviceExpertStore> store,
              std::unique_ptr<DeviceLoadCounter> counter,
              std::unique_ptr<gpu_worker::ExpertFetcher> fetcher);

  const int rank_;
  const std::unique_ptr<DeviceExpertStore> store_;
  const std::unique_ptr<DeviceLoadCounter> counter_;
  const std::unique_ptr<gpu_worker::ExpertFetcher> fetcher_;
  const std::unique_ptr<NcclStagingEngine> engine_;

  absl::Mutex mu_;
  std::string group_id_ ABSL_GUARDED_BY(mu_);  // rank 0: the id announced
  int aborts_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_CUDA_BACKEND_H_
