// ExpertTransfer.FetchExpert, served by every CPU worker: streams the bytes of
// one expert of the layout version this worker serves, in chunks, the last
// carrying the FNV-1a-64 checksum of the whole expert (proto/README.md,
// "Weight transfer").
//
// Only transfers a received Prepare names are served (transfer_permits.h):
// UNAVAILABLE while none does, PERMISSION_DENIED when the peer's certificate
// does not name the destination's node. The port itself is mutual TLS unless
// the worker runs --insecure.
//
// Other refusals (nothing is streamed): NOT_FOUND for a version this worker does not
// serve (staged versions are not served: transfer sources always name the
// source's serving version) or a layer or slot that is not on this GPU;
// FAILED_PRECONDITION for a slot holding another expert.
//
//   ExpertTransferService service(backend->store(), &permits, {});
//   builder.RegisterService(&service);
//
// Thread-safety: callback API; reactions only copy bytes already read, and the
// expert is read from the store once, under the store's lock, when the call
// starts, so a flip during a stream cannot tear it.
#ifndef CRAFT_GPU_WORKER_TRANSFER_SERVICE_H_
#define CRAFT_GPU_WORKER_TRANSFER_SERVICE_H_

#include <cstdint>

#include "craft/v1/worker.grpc.pb.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/transfer_permits.h"

namespace craft::gpu_worker {

class ExpertTransferService final : public craft::v1::ExpertTransfer::CallbackService {
 public:
  struct Options {
    int64_t chunk_bytes = 64 << 10;
  };

  // `store` and `permits` are not owned and must outlive the server.
  ExpertTransferService(const ExpertStore* store, const TransferPermits* permits, Options options);

  grpc::ServerWriteReactor<craft::v1::ExpertChunk>* FetchExpert(
      grpc::CallbackServerContext* context, const craft::v1::FetchExpertRequest* request) override;

 private:
  const ExpertStore* const store_;
  const TransferPermits* const permits_;
  const Options options_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_TRANSFER_SERVICE_H_
