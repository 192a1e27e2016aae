#include "server/dry_run.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/internal/test_support.h"

namespace craft::server {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;
using testing::SkewedLoads;
using testing::SmallConfig;

craft::v1::PlanRequest Request(const std::vector<std::vector<int64_t>>& loads) {
  craft::v1::PlanRequest request;
  for (const std::vector<int64_t>& layer : loads) {
    request.add_layers()->mutable_counts()->Add(layer.begin(), layer.end());
  }
  request.set_budget(-1);
  return request;
}

TEST(DryRunTest, EmptyFieldsTakeTheConfiguration) {
  absl::StatusOr<craft::v1::PlanResponse> response =
      PlanDryRun(Request(SkewedLoads()), SmallConfig());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->layout().num_gpus(), 4);
  EXPECT_EQ(response->layout().num_nodes(), 2);
  EXPECT_EQ(response->layout().layers_size(), 2);
  EXPECT_EQ(response->layout().version(), "");
  ASSERT_EQ(response->replicas_per_layer_size(), 2);
  // R = 1 per GPU: 4 redundant slots for the two hot experts.
  EXPECT_GT(response->replicas_per_layer(0) + response->replicas_per_layer(1), 0);
  EXPECT_GT(response->predicted_balancedness(), 0.5);
}

TEST(DryRunTest, RequestOverridesClusterAlgorithmAndBudget) {
  craft::v1::PlanRequest request = Request(SkewedLoads());
  request.set_num_gpus(2);
  request.set_algorithm("none");
  request.set_budget(0);
  absl::StatusOr<craft::v1::PlanResponse> response = PlanDryRun(request, SmallConfig());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->layout().num_gpus(), 2);
  EXPECT_EQ(response->layout().num_nodes(), 1);
  EXPECT_THAT(response->replicas_per_layer(), Each(0));
}

TEST(DryRunTest, MalformedRequestsAreInvalidArguments) {
  auto error = [](const craft::v1::PlanRequest& request) {
    absl::StatusOr<craft::v1::PlanResponse> response = PlanDryRun(request, SmallConfig());
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(response.status().message());
  };
  EXPECT_THAT(error(Request({})), HasSubstr("L x E load matrix"));
  EXPECT_THAT(error(Request({{1, 2, 3}, {1, 2}})), HasSubstr("layer 1 has 2 counts"));
  EXPECT_THAT(error(Request({{1, -2}})), HasSubstr("outside [0, 2^40]"));
  craft::v1::PlanRequest request = Request(SkewedLoads());
  request.set_algorithm("magic");
  EXPECT_THAT(error(request), HasSubstr("unknown algorithm"));
  request = Request(SkewedLoads());
  request.set_budget(-5);
  EXPECT_THAT(error(request), HasSubstr("budget must be -1"));
  request = Request(SkewedLoads());
  request.set_num_gpus(-1);
  EXPECT_THAT(error(request), HasSubstr("num_gpus -1"));
  request.set_num_gpus(6);
  request.set_num_nodes(4);
  error(request);
}

}  // namespace
}  // namespace craft::server
