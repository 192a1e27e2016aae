#include "gpu_worker/cpu_backend.h"

#include <string>

#include "gpu_worker/expert_weights.h"
#include "gpu_worker/local_layout.h"
#include "gpu_worker/replica_choice.h"
#include "gpu_worker/routing.h"
#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

constexpr int64_t kBytes = 64;

// GPU 1 of a 2-layer layout: layer 0 holds experts {2, 3} in global slots
// 2..3, layer 1 holds {1} in global slot 3.
LocalLayout Serving() { return {"0.0", {{2, {2, 3}}, {3, {1}}}}; }
LocalLayout Next() { return {"1.1", {{2, {3, 3, 0}}, {2, {1, 2}}}}; }

class CpuExpertStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(store_.LoadServing(Serving()).ok()); }

  CpuExpertStore store_{kBytes, /*capacity_bytes=*/0};
};

TEST_F(CpuExpertStoreTest, LoadServingFillsEverySlotWithItsExpertsWeights) {
  EXPECT_EQ(store_.serving_version(), "0.0");
  EXPECT_EQ(store_.staging_version(), "");
  EXPECT_EQ(*store_.SlotChecksum("0.0", 0, 1), ExpectedChecksum(0, 3, kBytes));
  EXPECT_EQ(*store_.SlotChecksum("0.0", 1, 0), ExpectedChecksum(1, 1, kBytes));
  EXPECT_EQ(*store_.ReadServingExpert("0.0", 0, 3, 3), ExpertWeights(0, 3, kBytes));
  EXPECT_EQ(store_.ExpectedChecksum(0, 3), ExpectedChecksum(0, 3, kBytes));
}

TEST_F(CpuExpertStoreTest, FlipMakesStagingServeAndFreesTheOldVersion) {
  ASSERT_TRUE(store_.BeginStaging(Next()).ok());
  EXPECT_EQ(store_.staging_version(), "1.1");
  ASSERT_TRUE(store_.CopyToStaging("1.1", 0, /*serving_slot=*/1, /*staging_slot=*/0).ok());
  ASSERT_TRUE(store_.WriteStaging("1.1", 0, 2, 0, ExpertWeights(0, 0, kBytes)).ok());
  EXPECT_EQ(*store_.SlotChecksum("1.1", 0, 0), ExpectedChecksum(0, 3, kBytes));
  EXPECT_EQ(*store_.SlotChecksum("1.1", 0, 2), ExpectedChecksum(0, 0, kBytes));
  // Staging is not served to peers before the flip.
  EXPECT_EQ(store_.ReadServingExpert("1.1", 0, 2, 3).status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(store_.Flip("1.1").ok());
  EXPECT_EQ(store_.serving_version(), "1.1");
  EXPECT_EQ(store_.staging_version(), "");
  EXPECT_EQ(*store_.ReadServingExpert("1.1", 0, 4, 0), ExpertWeights(0, 0, kBytes));
  EXPECT_EQ(store_.SlotChecksum("0.0", 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ReadServingExpert("0.0", 0, 2, 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Flip("1.1").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CpuExpertStoreTest, DropStagingKeepsServingAndRefusesLateWrites) {
  ASSERT_TRUE(store_.BeginStaging(Next()).ok());
  ASSERT_TRUE(store_.DropStaging("1.1").ok());
  EXPECT_EQ(store_.staging_version(), "");
  EXPECT_EQ(store_.serving_version(), "0.0");
  EXPECT_EQ(store_.WriteStaging("1.1", 0, 0, 0, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.DropStaging("1.1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*store_.SlotChecksum("0.0", 0, 0), ExpectedChecksum(0, 2, kBytes));
}

TEST_F(CpuExpertStoreTest, StagingNamesItsVersion) {
  ASSERT_TRUE(store_.BeginStaging(Next()).ok());
  EXPECT_EQ(store_.WriteStaging("2.2", 0, 0, 0, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_.CopyToStaging("2.2", 0, 0, 0).code(), absl::StatusCode::kFailedPrecondition);
  // A newer BeginStaging replaces the staged version.
  LocalLayout newer = Next();
  newer.version = "2.2";
  ASSERT_TRUE(store_.BeginStaging(newer).ok());
  EXPECT_EQ(store_.WriteStaging("1.1", 0, 0, 0, "x").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CpuExpertStoreTest, RefusesBadStagingAndSlots) {
  EXPECT_EQ(store_.BeginStaging(Serving()).code(), absl::StatusCode::kInvalidArgument);
  LocalLayout one_layer = Next();
  one_layer.layers.pop_back();
  EXPECT_EQ(store_.BeginStaging(one_layer).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_.BeginStaging(Next()).ok());
  EXPECT_EQ(store_.WriteStaging("1.1", 0, 3, 0, "x").code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_.WriteStaging("1.1", 2, 0, 0, "x").code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_.WriteStaging("1.1", 0, 0, kBytes - 1, "xy").code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_.WriteStaging("1.1", 0, 0, -1, "x").code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_.CopyToStaging("1.1", 1, /*serving_slot=*/1, 0).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_.SlotChecksum("1.1", 1, 2).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(CpuExpertStoreTest, ReadServingExpertRefusesWhatIsNotHere) {
  EXPECT_EQ(store_.ReadServingExpert("9.9", 0, 2, 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ReadServingExpert("0.0", 0, 1, 1).status().code(),
            absl::StatusCode::kNotFound);  // GPU 0's slot
  EXPECT_EQ(store_.ReadServingExpert("0.0", 5, 2, 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ReadServingExpert("0.0", 0, 2, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(CpuExpertStoreCapacityTest, RefusesWhatDoesNotFit) {
  // Serving needs 3 slots, so 1 expert may arrive: only arrivals take
  // memory, as on a device where kept and copied slots share buffers.
  CpuExpertStore store(kBytes, /*capacity_bytes=*/4 * kBytes);
  ASSERT_TRUE(store.LoadServing(Serving()).ok());
  EXPECT_EQ(store.staging_headroom_bytes(), kBytes);
  ASSERT_TRUE(store.BeginStaging(Next()).ok());
  ASSERT_TRUE(store.CopyToStaging(Next().version, 0, 0, 0).ok());
  ASSERT_TRUE(store.CopyToStaging(Next().version, 0, 0, 1).ok());
  ASSERT_TRUE(store.LoadToStaging(Next().version, 0, 2, 1).ok());
  ASSERT_TRUE(store.LoadToStaging(Next().version, 0, 2, 1).ok()) << "a slot counts once";
  EXPECT_EQ(store.WriteStaging(Next().version, 1, 0, 0, std::string(kBytes, 'x')).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CpuExpertStore(kBytes, 0).staging_headroom_bytes(), std::nullopt);
  CpuExpertStore tiny(kBytes, /*capacity_bytes=*/2 * kBytes);
  EXPECT_EQ(tiny.LoadServing(Serving()).code(), absl::StatusCode::kResourceExhausted);
}

TEST(CpuLoadCounterTest, RoutesTheChoicesAndCountsOnlyThisGpusSlots) {
  // 2 GPUs, 3 experts. Layer 0: GPU 0 {0, 1}, GPU 1 {2, 0}; layer 1: GPU 0
  // {2}, GPU 1 {0, 1}. Counting for GPU 1.
  planner::Layout layout;
  layout.num_experts = 3;
  layout.cluster = {2, 1};
  layout.layers.push_back({{2, 2}, {0, 1, 2, 0}});
  layout.layers.push_back({{1, 2}, {2, 0, 1}});
  ASSERT_TRUE(layout.Validate().ok());
  const RoutingTable routing(layout);
  const LocalLayout mine = LocalLayout::Of(layout, "1.1", 1);
  const int64_t window = 42;

  CpuLoadCounter counter;
  EXPECT_EQ(counter.Count(0, {0}, 1).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(counter.BeginWindow(window, mine, routing).ok());
  // top-2; -1 and 5 are padding. Token 2's first choice, expert 0, has a
  // replica on each GPU.
  ASSERT_TRUE(counter.Count(0, {1, 2, 2, -1, 0, 2, 5, 1}, 2).ok());
  ASSERT_TRUE(counter.Count(1, {0, 0, 1, 2}, 1).ok());
  EXPECT_EQ(counter.Count(2, {0}, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(counter.Count(0, {0, 1, 2}, 2).code(), absl::StatusCode::kInvalidArgument);
  const absl::StatusOr<std::vector<std::vector<int64_t>>> counts = counter.EndWindow();
  ASSERT_TRUE(counts.ok()) << counts.status();
  const int64_t token2_here = ChooseReplica(window, 0, /*token=*/2, /*k=*/0, 2) == 1 ? 1 : 0;
  EXPECT_EQ(*counts, (std::vector<std::vector<int64_t>>{{3, token2_here}, {2, 1}}));
  EXPECT_EQ(counter.EndWindow().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace craft::gpu_worker
