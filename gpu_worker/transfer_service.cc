#include "gpu_worker/transfer_service.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/grpc/status.h"
#include "common/peer_identity.h"
#include "gpu_worker/expert_weights.h"

namespace craft::gpu_worker {
namespace {

// Streams one expert's bytes chunk by chunk, or finishes at once with an
// error. Deletes itself when done.
class ChunkWriter : public grpc::ServerWriteReactor<craft::v1::ExpertChunk> {
 public:
  ChunkWriter(absl::StatusOr<std::string> expert, int64_t chunk_bytes)
      : chunk_bytes_(static_cast<size_t>(chunk_bytes)) {
    if (!expert.ok()) {
      Finish(ToGrpcStatus(expert.status()));
      return;
    }
    bytes_ = *std::move(expert);
    checksum_ = Fnv1a64(bytes_);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // the client went away: nothing more can be written
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    const size_t n = std::min(chunk_bytes_, bytes_.size() - offset_);
    chunk_.set_data(bytes_.substr(offset_, n));
    offset_ += n;
    if (offset_ < bytes_.size()) {
      StartWrite(&chunk_);
      return;
    }
    chunk_.set_last(true);
    chunk_.set_checksum(checksum_);
    StartWriteAndFinish(&chunk_, grpc::WriteOptions(), grpc::Status::OK);
  }

  const size_t chunk_bytes_;
  std::string bytes_;
  uint64_t checksum_ = 0;
  size_t offset_ = 0;
  craft::v1::ExpertChunk chunk_;  // the write in flight (one at a time)
};

}  // namespace

ExpertTransferService::ExpertTransferService(const ExpertStore* store,
                                             const TransferPermits* permits, Options options)
    : store_(store), permits_(permits), options_(options) {}

grpc::ServerWriteReactor<craft::v1::ExpertChunk>* ExpertTransferService::FetchExpert(
    grpc::CallbackServerContext* context, const craft::v1::FetchExpertRequest* request) {
  if (absl::Status permitted = permits_->Check(*request, PeerDnsNames(*context)); !permitted.ok()) {
    return new ChunkWriter(permitted, 1);
  }
  absl::StatusOr<std::string> expert = store_->ReadServingExpert(
      request->layout_version(), request->layer(), request->slot(), request->expert());
  return new ChunkWriter(std::move(expert), std::max<int64_t>(options_.chunk_bytes, 1));
}

}  // namespace craft::gpu_worker
