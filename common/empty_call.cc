#include "common/empty_call.h"

#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "grpcpp/generic/generic_stub.h"

namespace craft {

EmptyCallReply CallWithEmptyRequest(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& method, absl::Time deadline) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  EmptyCallReply reply;
  absl::Notification done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) {
                   reply.status = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();  // the call ends by its deadline at the latest
  std::vector<grpc::Slice> slices;
  if (reply.status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      reply.bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return reply;
}

}  // namespace craft
