#include "gpu_worker/cuda/expert_hash.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gpu_worker/cuda/expert_shape.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

float Bf16ToFloat(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

TEST(ExpertHashTest, FilledExpertMatchesItsExpectedChecksum) {
  const int64_t elements = 3 * 64 * 32;
  std::vector<uint16_t> expert(elements);
  HostFillExpert(/*layer=*/2, /*expert=*/5, elements, expert.data());
  EXPECT_EQ(HostChecksum(expert.data(), elements * 2), HostExpectedChecksum(2, 5, elements));
}

TEST(ExpertHashTest, ValuesAreFiniteNonZeroAndSmall) {
  std::vector<uint16_t> expert(4096);
  HostFillExpert(0, 0, expert.size(), expert.data());
  int negative = 0;
  for (uint16_t bits : expert) {
    const float value = Bf16ToFloat(bits);
    ASSERT_TRUE(std::isfinite(value));
    ASSERT_GE(std::fabs(value), 1.0f / 128);
    ASSERT_LT(std::fabs(value), 1.0f / 8);
    negative += value < 0;
  }
  EXPECT_NEAR(negative, 2048, 200);
}

TEST(ExpertHashTest, ExpertsDiffer) {
  const int64_t elements = 3 * 8 * 8;
  EXPECT_NE(HostExpectedChecksum(0, 1, elements), HostExpectedChecksum(0, 2, elements));
  EXPECT_NE(HostExpectedChecksum(0, 1, elements), HostExpectedChecksum(1, 1, elements));
  EXPECT_NE(HostExpectedChecksum(1, 0, elements), HostExpectedChecksum(0, 1, elements));
}

TEST(ExpertHashTest, ChecksumSeesFlipsSwapsAndLength) {
  const int64_t elements = 3 * 16 * 8;
  std::vector<uint16_t> expert(elements);
  HostFillExpert(3, 7, elements, expert.data());
  const uint64_t good = HostChecksum(expert.data(), elements * 2);

  std::vector<uint16_t> flipped = expert;
  flipped[100] ^= 1;
  EXPECT_NE(HostChecksum(flipped.data(), elements * 2), good);

  std::vector<uint16_t> swapped = expert;
  for (int j = 0; j < 4; ++j) std::swap(swapped[j], swapped[40 + j]);  // two whole words
  EXPECT_NE(HostChecksum(swapped.data(), elements * 2), good);

  EXPECT_NE(HostChecksum(expert.data(), elements * 2 - 8), good);
  std::vector<uint16_t> zeros(elements, 0);
  EXPECT_NE(HostChecksum(zeros.data(), elements * 2), good);
}

TEST(ExpertShapeTest, Validates) {
  ExpertShape deepseek;
  EXPECT_TRUE(deepseek.Validate().ok());
  EXPECT_EQ(deepseek.bytes(), 88080384);  // 3 x 7168 x 2048 x 2
  EXPECT_FALSE((ExpertShape{7168, 2044}).Validate().ok());
  EXPECT_FALSE((ExpertShape{0, 2048}).Validate().ok());
}

}  // namespace
}  // namespace craft::gpu
