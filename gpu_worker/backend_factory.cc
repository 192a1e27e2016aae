#include "gpu_worker/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/transfer_client.h"

namespace craft::gpu_worker {

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     const BackendOptions& options) {
  if (name == "cpu") {
    return std::make_unique<CpuBackend>(options.bytes_per_expert, options.capacity_bytes,
                                        std::make_unique<GrpcExpertFetcher>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", name, "': this build has only 'cpu'"));
}

}  // namespace craft::gpu_worker
