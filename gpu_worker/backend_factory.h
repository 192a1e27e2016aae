// Builds the backend named by --backend. "cpu" is always there; others
// register themselves when their library is linked in (the CUDA backend, in
// craft-worker-cuda: gpu_worker/cuda/cuda_backend_factory.cc), so the plain
// worker needs no CUDA libraries at run time.
#ifndef CRAFT_GPU_WORKER_BACKEND_FACTORY_H_
#define CRAFT_GPU_WORKER_BACKEND_FACTORY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/transport_security.h"
#include "gpu_worker/backend.h"

namespace craft::gpu_worker {

struct BackendOptions {
  int64_t bytes_per_expert = 4096;
  int64_t capacity_bytes = int64_t{1} << 30;  // 0: unlimited (cpu only)
  int gpu = 0;                                // global rank
  int num_gpus = 1;
  // Device backends.
  int device = -1;  // device index on this host; -1: gpu modulo the devices there
  // An expert's matrices (w1, w3: hidden x inter; w2: inter x hidden);
  // bytes_per_expert must be their size.
  int64_t expert_hidden = 0;
  int64_t expert_inter = 0;
  absl::Duration transfer_timeout = absl::Seconds(60);
  // Channels to peers' transfer ports.
  TransportSecurity security;
};

using BackendMaker =
    std::function<absl::StatusOr<std::unique_ptr<Backend>>(const BackendOptions& options)>;

// Adds a backend under `name` (at static initialisation); returns true so
// that it can initialise a namespace-scope constant. A second registration of
// one name replaces the first.
bool RegisterBackend(const std::string& name, BackendMaker maker);

// INVALID_ARGUMENT naming the known backends for any other name.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     const BackendOptions& options);

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_BACKEND_FACTORY_H_
