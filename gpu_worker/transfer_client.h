// The CPU backend's transfer mechanism: fetches an expert from a peer's
// ExpertTransfer service (transfer_service.h) into a staging slot.
//
// The stream is checked as it arrives: no chunk may run past the expert's
// size, the last chunk must be marked and carry the sender's checksum, the
// total must be the expert's size and the checksum must match the received
// bytes (FNV-1a-64). DATA_LOSS otherwise.
//
// Thread-safety: thread-safe. Channels are cached per endpoint and shared by
// concurrent fetches; each Fetch blocks its calling thread (the stager's),
// never a gRPC callback thread.
#ifndef CRAFT_GPU_WORKER_TRANSFER_CLIENT_H_
#define CRAFT_GPU_WORKER_TRANSFER_CLIENT_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/transport_security.h"
#include "gpu_worker/backend.h"
#include "grpcpp/channel.h"

namespace craft::gpu_worker {

class GrpcExpertFetcher : public ExpertFetcher {
 public:
  // Mutual TLS to peers (whose certificates must name their node), or
  // plaintext when `security.insecure`.
  explicit GrpcExpertFetcher(TransportSecurity security) : security_(std::move(security)) {}

  absl::StatusOr<int64_t> Fetch(const FetchRequest& request, ExpertStore* store,
                                const std::atomic<bool>* cancelled) override;

 private:
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& endpoint, const std::string& node);
  absl::StatusOr<int64_t> FetchOnce(const FetchRequest& request, ExpertStore* store,
                                    const std::atomic<bool>* cancelled);

  const TransportSecurity security_;
  absl::Mutex mu_;
  // By (endpoint, expected node name).
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_TRANSFER_CLIENT_H_
