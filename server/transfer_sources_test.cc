#include "server/transfer_sources.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/initial_layout.h"

namespace craft::server {
namespace {

using ::testing::HasSubstr;

class TransferSourcesTest : public ::testing::Test {
 protected:
  TransferSourcesTest() {
    initial_ = std::make_shared<const planner::Layout>(
        *planner::ContiguousLayout(1, 4, {4, 2}));  // expert g on GPU g
    // Experts 0 and 1 swapped between GPUs 0 and 1, plus a replica of 0 on GPU 2.
    planner::Layout next;
    next.num_experts = 4;
    next.cluster = {4, 2};
    next.layers = {{{1, 1, 2, 1}, {1, 0, 2, 0, 3}}};
    target_ = next;
  }

  std::shared_ptr<const planner::Layout> initial_;
  planner::Layout target_;
};

TEST_F(TransferSourcesTest, AllOnOneVersionReadsFromIt) {
  std::vector<ServingGpu> serving(4, ServingGpu{"0.0", initial_});
  absl::StatusOr<SourcedTransfers> plan = PlanSourcedTransfers(target_, serving, 1000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->transfers.size(), 3u);  // GPU 0 gets 1, GPU 1 gets 0, GPU 2 gets 0
  for (const craft::v1::Transfer& transfer : plan->transfers) {
    EXPECT_EQ(transfer.src_version(), "0.0");
    // Under 0.0 expert e sits in global slot e on GPU e.
    EXPECT_EQ(transfer.src_slot(), transfer.expert());
    EXPECT_EQ(transfer.src_gpu(), transfer.expert());
  }
  EXPECT_EQ(plan->max_bytes_received_by_a_gpu, 1000);
}

TEST_F(TransferSourcesTest, MixedVersionsNameEachSourceVersionAndSlot) {
  // GPUs 2 and 3 already serve "1.1", where GPU 2 holds experts {3, 2} in that order.
  planner::Layout other;
  other.num_experts = 4;
  other.cluster = {4, 2};
  other.layers = {{{1, 1, 2, 0}, {0, 1, 3, 2}}};
  auto other_layout = std::make_shared<const planner::Layout>(other);
  std::vector<ServingGpu> serving = {
      {"0.0", initial_}, {"0.0", initial_}, {"1.1", other_layout}, {"1.1", other_layout}};
  absl::StatusOr<SourcedTransfers> plan = PlanSourcedTransfers(target_, serving, 1000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  bool saw_expert_3 = false;
  for (const craft::v1::Transfer& transfer : plan->transfers) {
    if (transfer.expert() != 3) continue;
    // GPU 3 holds nothing under 1.1: it loads expert 3 from GPU 2, slot 2 of 1.1.
    saw_expert_3 = true;
    EXPECT_EQ(transfer.dst_gpu(), 3);
    EXPECT_EQ(transfer.src_gpu(), 2);
    EXPECT_EQ(transfer.src_version(), "1.1");
    EXPECT_EQ(transfer.src_slot(), 2);
  }
  EXPECT_TRUE(saw_expert_3);
}

TEST_F(TransferSourcesTest, UnknownVersionLoadsEverythingFromOthers) {
  // Under "2.2" GPU 2 holds experts {2, 3}; GPU 3 serves a version nobody knows.
  planner::Layout known;
  known.num_experts = 4;
  known.cluster = {4, 2};
  known.layers = {{{1, 1, 2, 0}, {0, 1, 2, 3}}};
  auto known_layout = std::make_shared<const planner::Layout>(known);
  std::vector<ServingGpu> serving = {
      {"2.2", known_layout}, {"2.2", known_layout}, {"2.2", known_layout}, {"9.9", nullptr}};
  absl::StatusOr<SourcedTransfers> plan = PlanSourcedTransfers(*initial_, serving, 1000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // GPU 3's slot is reloaded even if it may hold expert 3 already: its
  // weights cannot be trusted without a known layout.
  ASSERT_EQ(plan->transfers.size(), 1u);
  const craft::v1::Transfer& transfer = plan->transfers[0];
  EXPECT_EQ(transfer.dst_gpu(), 3);
  EXPECT_EQ(transfer.dst_slot(), 3);
  EXPECT_EQ(transfer.src_gpu(), 2);
  EXPECT_EQ(transfer.src_slot(), 3);
  EXPECT_EQ(transfer.src_version(), "2.2");
}

TEST_F(TransferSourcesTest, NoHolderIsFailedPrecondition) {
  std::vector<ServingGpu> serving = {
      {"0.0", initial_}, {"0.0", initial_}, {"0.0", initial_}, {"9.9", nullptr}};
  // Expert 3 lived only on GPU 3, whose weights are unknown.
  absl::StatusOr<SourcedTransfers> plan = PlanSourcedTransfers(target_, serving, 1000);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plan.status().message(), HasSubstr("expert 3 has no replica"));
}

TEST_F(TransferSourcesTest, WrongNumberOfGpusIsInvalid) {
  std::vector<ServingGpu> serving(3, ServingGpu{"0.0", initial_});
  EXPECT_EQ(PlanSourcedTransfers(target_, serving, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::server
