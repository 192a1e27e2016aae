#include "common/grpc/status.h"

#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace craft {
namespace {

// Every canonical code, as each library names it.
std::vector<std::pair<absl::StatusCode, grpc::StatusCode>> EveryCode() {
  return {
      {absl::StatusCode::kOk, grpc::StatusCode::OK},
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
}

TEST(GrpcStatusTest, ToGrpcKeepsEveryCodeAndTheMessage) {
  for (const auto& [absl_code, grpc_code] : EveryCode()) {
    const grpc::Status converted = ToGrpcStatus(absl::Status(absl_code, "the reason"));
    EXPECT_EQ(converted.error_code(), grpc_code) << absl::StatusCodeToString(absl_code);
    // absl drops the message of an OK status.
    EXPECT_EQ(converted.error_message(), absl_code == absl::StatusCode::kOk ? "" : "the reason")
        << absl::StatusCodeToString(absl_code);
  }
}

TEST(GrpcStatusTest, FromGrpcKeepsEveryCodeAndTheMessage) {
  for (const auto& [absl_code, grpc_code] : EveryCode()) {
    if (grpc_code == grpc::StatusCode::OK) continue;
    EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc_code, "the reason")),
              absl::Status(absl_code, "the reason"));
  }
}

TEST(GrpcStatusTest, OkIsOkBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(FromGrpcStatus(grpc::Status::OK), absl::OkStatus());
  // A message on an OK grpc::Status does not make it an error.
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::OK, "fine")), absl::OkStatus());
}

TEST(GrpcStatusTest, RoundTripsKeepTheMessage) {
  const absl::Status status = absl::FailedPreconditionError("layout v7 is not prepared");
  EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(status)), status);
}

}  // namespace
}  // namespace craft
