// Builds the backend named by --backend. Only "cpu" exists today; the CUDA/NCCL
// backend will be added here.
#ifndef CRAFT_GPU_WORKER_BACKEND_FACTORY_H_
#define CRAFT_GPU_WORKER_BACKEND_FACTORY_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gpu_worker/backend.h"

namespace craft::gpu_worker {

struct BackendOptions {
  int64_t bytes_per_expert = 4096;
  int64_t capacity_bytes = int64_t{1} << 30;  // 0: unlimited
};

// INVALID_ARGUMENT naming the known backends for any other name.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     const BackendOptions& options);

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_BACKEND_FACTORY_H_
