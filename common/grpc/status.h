// Conversion between absl::Status, what craft's code returns, and
// grpc::Status, what crosses the wire. The two share the canonical status
// codes (same names, same numbers), so a conversion keeps the code and the
// message and nothing else (absl payloads do not travel). It is gRPC's, not
// craft's contract (the etcd client uses it too), so it lives here and not in
// wire/.
//
//   reactor->Finish(ToGrpcStatus(plan.status()));
//   CRAFT_RETURN_IF_ERROR(FromGrpcStatus(stub->GetLayout(&context, request, &reply)));
#ifndef CRAFT_COMMON_GRPC_STATUS_H_
#define CRAFT_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"

namespace craft {

// `status`'s code and message as a grpc::Status; OK for an OK status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// `status`'s code and message as an absl::Status; OK (with no message) for an
// OK status.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace craft

#endif  // CRAFT_COMMON_GRPC_STATUS_H_
