#include "gpu_worker/transfer_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc/status.h"
#include "craft/v1/worker.grpc.pb.h"
#include "gpu_worker/expert_weights.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace craft::gpu_worker {
namespace {

// Accumulates a stream of chunks into a staging slot and checks it.
class ChunkSink {
 public:
  ChunkSink(const FetchRequest& request, ExpertStore* store)
      : request_(request), store_(store), expected_(store->bytes_per_expert()) {}

  absl::Status Add(const craft::v1::ExpertChunk& chunk) {
    if (last_seen_) return absl::DataLossError("a chunk arrived after the last one");
    const int64_t size = static_cast<int64_t>(chunk.data().size());
    if (size > expected_ - received_) {
      return absl::DataLossError(
          absl::StrCat("the peer sent more than the expert's ", expected_, " bytes"));
    }
    absl::Status written = store_->WriteStaging(request_.dst_version, request_.layer,
                                                request_.dst_slot, received_, chunk.data());
    if (!written.ok()) return written;
    hash_ = Fnv1a64(chunk.data(), hash_);
    received_ += size;
    if (chunk.last()) {
      last_seen_ = true;
      sent_checksum_ = chunk.checksum();
    }
    return absl::OkStatus();
  }

  // The bytes received, once the stream ended well.
  absl::StatusOr<int64_t> Finish() const {
    if (!last_seen_) return absl::DataLossError("the stream ended without its last chunk");
    if (received_ != expected_) {
      return absl::DataLossError(
          absl::StrCat("received ", received_, " bytes, expected ", expected_));
    }
    if (sent_checksum_ != hash_) {
      return absl::DataLossError(absl::StrCat("the sender's checksum ", sent_checksum_,
                                              " does not match the received bytes' ", hash_));
    }
    return received_;
  }

 private:
  const FetchRequest& request_;
  ExpertStore* const store_;
  const int64_t expected_;
  int64_t received_ = 0;
  uint64_t hash_ = kFnv1a64OffsetBasis;
  bool last_seen_ = false;
  uint64_t sent_checksum_ = 0;
};

}  // namespace

std::shared_ptr<grpc::Channel> GrpcExpertFetcher::ChannelTo(const std::string& endpoint,
                                                            const std::string& node) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[{endpoint, node}];
  if (channel == nullptr) {
    channel = MakeChannel(endpoint, security_, node);
  }
  return channel;
}

absl::StatusOr<int64_t> GrpcExpertFetcher::Fetch(const FetchRequest& request, ExpertStore* store,
                                                 const std::atomic<bool>* cancelled) {
  if (!security_.insecure && request.src_node.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("the Prepare names no node for gpu ",
                                                      request.src_gpu,
                                                      ": its certificate cannot be checked"));
  }
  // UNAVAILABLE is what a peer answers before its own Prepare arrived (they
  // reach nodes at slightly different times), and what a connection attempt
  // to a restarting peer gets: retry until the deadline.
  absl::Duration backoff = absl::Milliseconds(20);
  while (true) {
    absl::StatusOr<int64_t> fetched = FetchOnce(request, store, cancelled);
    if (fetched.ok() || fetched.status().code() != absl::StatusCode::kUnavailable ||
        (cancelled != nullptr && cancelled->load()) || absl::Now() + backoff >= request.deadline) {
      return fetched;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

absl::StatusOr<int64_t> GrpcExpertFetcher::FetchOnce(const FetchRequest& request,
                                                     ExpertStore* store,
                                                     const std::atomic<bool>* cancelled) {
  std::unique_ptr<craft::v1::ExpertTransfer::Stub> stub =
      craft::v1::ExpertTransfer::NewStub(ChannelTo(request.src_endpoint, request.src_node));
  grpc::ClientContext context;
  if (request.deadline != absl::InfiniteFuture()) {
    context.set_deadline(absl::ToChronoTime(request.deadline));
  }
  craft::v1::FetchExpertRequest wire;
  wire.set_layout_version(request.src_version);
  wire.set_layer(request.layer);
  wire.set_slot(request.src_slot);
  wire.set_expert(request.expert);
  wire.set_dst_gpu(request.dst_gpu);

  std::unique_ptr<grpc::ClientReader<craft::v1::ExpertChunk>> reader =
      stub->FetchExpert(&context, wire);
  ChunkSink sink(request, store);
  absl::Status problem;
  craft::v1::ExpertChunk chunk;
  while (problem.ok() && reader->Read(&chunk)) {
    if (cancelled != nullptr && cancelled->load()) {
      problem = absl::CancelledError("staging cancelled");
    } else {
      problem = sink.Add(chunk);
    }
  }
  if (!problem.ok()) {
    context.TryCancel();
    while (reader->Read(&chunk)) {
    }
    (void)reader->Finish();  // CANCELLED: `problem` is the reason
    return problem;
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return sink.Finish();
}

}  // namespace craft::gpu_worker
