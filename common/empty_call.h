// One unary call with an empty request and the raw response, without the
// method's generated code: how craft asks grpc.health.v1.Health/Check (an
// empty HealthCheckRequest asks about the whole server), from craftctl's
// `health` (exec probes) and the tests.
#ifndef CRAFT_COMMON_EMPTY_CALL_H_
#define CRAFT_COMMON_EMPTY_CALL_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace craft {

inline constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";
// The bytes of HealthCheckResponse{status: SERVING}.
inline constexpr absl::string_view kServingResponse("\x08\x01", 2);

struct EmptyCallReply {
  grpc::Status status;
  std::string bytes;  // the response, when status is OK
};

// Calls `method` (e.g. kHealthCheckMethod) on `channel` with an empty
// request; blocks until it is answered or `deadline` passes.
EmptyCallReply CallWithEmptyRequest(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& method, absl::Time deadline);

}  // namespace craft

#endif  // CRAFT_COMMON_EMPTY_CALL_H_
