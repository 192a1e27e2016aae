// Registers --backend=cuda (gpu_worker/backend_factory.h). Linked with
// alwayslink into craft-worker-cuda, which is craft-worker plus this.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu_worker/backend_factory.h"
#include "gpu_worker/cuda/cuda_backend.h"
#include "gpu_worker/cuda/cuda_check.h"
#include "gpu_worker/transfer_client.h"

namespace craft::gpu {
namespace {

absl::StatusOr<std::unique_ptr<gpu_worker::Backend>> MakeCudaBackend(
    const gpu_worker::BackendOptions& options) {
  CudaBackendOptions cuda;
  cuda.shape.hidden = options.expert_hidden;
  cuda.shape.inter = options.expert_inter;
  if (options.expert_hidden <= 0 || options.expert_inter <= 0 ||
      cuda.shape.bytes() != options.bytes_per_expert) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the cuda backend needs --expert_hidden and --expert_inter whose experts (3 bf16 "
        "matrices, ",
        cuda.shape.bytes(), " bytes) have --expert_bytes (", options.bytes_per_expert, ")"));
  }
  if (options.capacity_bytes <= 0) {
    return absl::InvalidArgumentError("the cuda backend needs a positive --memory_bytes");
  }
  cuda.device = options.device;
  if (cuda.device < 0) {
    int devices = 0;
    CRAFT_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&devices));
    if (devices <= 0) return absl::FailedPreconditionError("no CUDA device");
    cuda.device = options.gpu % devices;
  }
  cuda.capacity_bytes = options.capacity_bytes;
  cuda.rank = options.gpu;
  cuda.nranks = options.num_gpus;
  cuda.transfer.timeout = options.transfer_timeout;
  CRAFT_ASSIGN_OR_RETURN(
      std::unique_ptr<CudaBackend> backend,
      CudaBackend::Create(cuda, std::make_unique<gpu_worker::GrpcExpertFetcher>(options.security)));
  return std::unique_ptr<gpu_worker::Backend>(std::move(backend));
}

const bool kRegistered = gpu_worker::RegisterBackend("cuda", MakeCudaBackend);

}  // namespace
}  // namespace craft::gpu
