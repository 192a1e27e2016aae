#include "gpu_worker/cuda/device_slots.h"

#include <memory>
#include <vector>

#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

SlotsConfig SmallConfig() {
  SlotsConfig config;
  config.shape = {64, 32};
  config.slots_per_layer = {3, 2};
  config.staging_buffers = 2;
  return config;
}

TEST(DeviceSlotsTest, FilledSlotsHashToTheHostReference) {
  CRAFT_REQUIRE_GPUS(1);
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots,
                             DeviceSlots::Create(SmallConfig()));
  const int64_t elements = slots->shape().elements();
  CRAFT_ASSERT_OK(slots->FillSlot(0, 0, 4));
  CRAFT_ASSERT_OK(slots->FillSlot(0, 2, 9));
  CRAFT_ASSERT_OK(slots->FillSlot(1, 1, 4));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> sums,
                             slots->Checksums({slots->slot_data(0, 0), slots->slot_data(0, 2),
                                               slots->slot_data(1, 1), slots->slot_data(0, 1)}));
  EXPECT_EQ(sums[0], HostExpectedChecksum(0, 4, elements));
  EXPECT_EQ(sums[1], HostExpectedChecksum(0, 9, elements));
  EXPECT_EQ(sums[2], HostExpectedChecksum(1, 4, elements));
  std::vector<uint16_t> zeros(elements, 0);
  EXPECT_EQ(sums[3], HostChecksum(zeros.data(), elements * 2));  // never filled

  const std::vector<ExpertId> ids = {{0, 4}, {0, 9}, {1, 4}};
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> expected, slots->ExpectedChecksums(ids));
  EXPECT_EQ(expected, std::vector<uint64_t>(sums.begin(), sums.begin() + 3));
}

TEST(DeviceSlotsTest, DeepSeekSizedExpertMatchesHostReference) {
  CRAFT_REQUIRE_GPUS(1);
  SlotsConfig config;  // 3 x 7168 x 2048 bf16
  config.slots_per_layer = {1};
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots, DeviceSlots::Create(config));
  CRAFT_ASSERT_OK(slots->FillSlot(0, 0, 200));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> sums,
                             slots->Checksums({slots->slot_data(0, 0)}));
  EXPECT_EQ(sums[0], HostExpectedChecksum(0, 200, config.shape.elements()));
}

TEST(DeviceSlotsTest, ManyBuffersInOneCall) {
  CRAFT_REQUIRE_GPUS(1);
  SlotsConfig config = SmallConfig();
  config.slots_per_layer = {300};  // more than one checksum launch batch
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots, DeviceSlots::Create(config));
  std::vector<void*> buffers;
  std::vector<ExpertId> ids;
  for (int s = 0; s < 300; ++s) {
    CRAFT_ASSERT_OK(slots->FillSlot(0, s, s));
    buffers.push_back(slots->slot_data(0, s));
    ids.push_back({0, s});
  }
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> sums, slots->Checksums(buffers));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> expected, slots->ExpectedChecksums(ids));
  EXPECT_EQ(sums, expected);
}

TEST(DeviceSlotsTest, ThePoolHandsOutEachFreeBufferOnce) {
  CRAFT_REQUIRE_GPUS(1);
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DeviceSlots> slots,
                             DeviceSlots::Create(SmallConfig()));
  CRAFT_ASSERT_OK_AND_ASSIGN(int a, slots->AcquireStaging());
  CRAFT_ASSERT_OK_AND_ASSIGN(int b, slots->AcquireStaging());
  EXPECT_NE(slots->staging_data(a), slots->staging_data(b));
  EXPECT_EQ(slots->AcquireStaging().status().code(), absl::StatusCode::kResourceExhausted);
  CRAFT_ASSERT_OK(slots->ReleaseStaging(b));
  EXPECT_FALSE(slots->ReleaseStaging(b).ok());  // not acquired any more
  EXPECT_EQ(slots->free_staging(), 1);
  // A pool buffer takes an expert like a slot does.
  CRAFT_ASSERT_OK(slots->FillBuffer(slots->staging_data(a), {1, 3}));
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> sums,
                             slots->Checksums({slots->staging_data(a)}));
  EXPECT_EQ(sums[0], HostExpectedChecksum(1, 3, slots->shape().elements()));
}

TEST(DeviceSlotsTest, RejectsBadConfig) {
  SlotsConfig config = SmallConfig();
  config.shape.inter = 30;
  EXPECT_EQ(DeviceSlots::Create(config).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::gpu
