#include "gpu_worker/backend_factory.h"

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "gpu_worker/cpu_backend.h"
#include "gpu_worker/transfer_client.h"

namespace craft::gpu_worker {
namespace {

// The backend every build has.
absl::StatusOr<std::unique_ptr<Backend>> MakeCpuBackend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options.bytes_per_expert, options.capacity_bytes,
                                      std::make_unique<GrpcExpertFetcher>(options.security));
}

struct Registry {
  absl::Mutex mu;
  // Initialised with the registry (no lock: no other thread can see it yet).
  std::map<std::string, BackendMaker> makers ABSL_GUARDED_BY(mu) = {{"cpu", MakeCpuBackend}};
};

// Constructed on first use: registrations run during static initialisation,
// in an order across files that C++ does not fix.
Registry& TheRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

}  // namespace

bool RegisterBackend(const std::string& name, BackendMaker maker) {
  Registry& registry = TheRegistry();
  absl::MutexLock lock(&registry.mu);
  registry.makers[name] = std::move(maker);
  return true;
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     const BackendOptions& options) {
  Registry& registry = TheRegistry();
  BackendMaker maker;
  std::vector<std::string> known;
  {
    absl::MutexLock lock(&registry.mu);
    for (const auto& [known_name, unused] : registry.makers) known.push_back(known_name);
    const auto it = registry.makers.find(std::string(name));
    if (it != registry.makers.end()) maker = it->second;
  }
  if (!maker) {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", name, "': this build has ",
                                                   absl::StrJoin(known, ", "),
                                                   " (craft-worker-cuda adds cuda)"));
  }
  return maker(options);
}

}  // namespace craft::gpu_worker
