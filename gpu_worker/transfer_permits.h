// The transfers this GPU's ExpertTransfer port may serve: exactly those the
// Prepares it received name with src_gpu == this GPU. Anything else — an
// anonymous client, a peer asking for an expert no Prepare moves, a peer of
// another node asking in a transfer's name — is refused, so the port never
// streams weights to whoever asks.
//
//   permits.Grant(prepare);    // when the Prepare arrives, before staging
//   permits.Check(request, PeerDnsNames(*context));
//   permits.Revoke(version);   // Abort
//
// The permits of the two most recent versions are kept (a resync Prepare may
// arrive while peers still fetch for an apply).
//
// Thread-safe.
#ifndef CRAFT_GPU_WORKER_TRANSFER_PERMITS_H_
#define CRAFT_GPU_WORKER_TRANSFER_PERMITS_H_

#include <deque>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/agent.pb.h"
#include "craft/v1/worker.pb.h"

namespace craft::gpu_worker {

class TransferPermits {
 public:
  // `check_identity`: under mutual TLS the asking peer's certificate must
  // name the node of the transfer's dst_gpu (Prepare.gpu_nodes).
  TransferPermits(int gpu, bool check_identity) : gpu_(gpu), check_identity_(check_identity) {}

  void Grant(const craft::v1::Prepare& prepare);
  void Revoke(const std::string& version);

  // OK; UNAVAILABLE when no Prepare received names this transfer (yet: the
  // asker retries); PERMISSION_DENIED when one does but the peer's
  // certificate does not name the destination's node.
  absl::Status Check(const craft::v1::FetchExpertRequest& request,
                     const std::vector<std::string>& peer_names) const;

 private:
  // (src_version, layer, src_slot, expert, dst_gpu).
  using Key = std::tuple<std::string, int, int, int, int>;
  static constexpr size_t kVersionsKept = 2;

  const int gpu_;
  const bool check_identity_;
  mutable absl::Mutex mu_;
  // Prepare version -> the transfers it lets peers fetch from us -> the node
  // name of their dst_gpu.
  std::map<std::string, std::map<Key, std::string>> by_version_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> versions_ ABSL_GUARDED_BY(mu_);  // oldest first
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_TRANSFER_PERMITS_H_
