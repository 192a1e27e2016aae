#include "server/dry_run.h"

#include <limits>
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

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

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
      PlanDryRun(Request(SkewedLoads()), SmallConfig(), kNoLimit);
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
  absl::StatusOr<craft::v1::PlanResponse> response = PlanDryRun(request, SmallConfig(), kNoLimit);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->layout().num_gpus(), 2);
  EXPECT_EQ(response->layout().num_nodes(), 1);
  EXPECT_THAT(response->replicas_per_layer(), Each(0));
}

TEST(DryRunTest, MalformedRequestsAreInvalidArguments) {
  auto error = [](const craft::v1::PlanRequest& request) {
    absl::StatusOr<craft::v1::PlanResponse> response = PlanDryRun(request, SmallConfig(), kNoLimit);
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

TEST(DryRunTest, WorkBeyondTheLimitIsRefusedBeforePlanning) {
  // The probe that ran for 52 s at 1.9 GB: one layer of 100,000 experts on
  // 4096 GPUs, in a 100 KB request.
  craft::v1::PlanRequest huge;
  huge.add_layers()->mutable_counts()->Resize(100'000, 1);
  huge.set_num_gpus(4096);
  huge.set_num_nodes(512);
  huge.set_budget(-1);
  const PlannerConfig config = SmallConfig();
  const absl::StatusOr<craft::v1::PlanResponse> refused =
      PlanDryRun(huge, config, DefaultMaxPlanWork(config));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("1 layers x 100000 experts on 4096 GPUs"));
  // The configured cluster's own plan always fits, twice over.
  EXPECT_GE(
      DefaultMaxPlanWork(config),
      2 * PlanWork(config.model.num_layers, config.model.num_experts, config.cluster.num_gpus, 3));
  EXPECT_TRUE(PlanDryRun(Request(SkewedLoads()), config, DefaultMaxPlanWork(config)).ok());
  EXPECT_EQ(PlanWork(1 << 20, 1 << 20, 1 << 20, 1 << 20), std::numeric_limits<int64_t>::max());
}

}  // namespace
}  // namespace craft::server
