#include "common/backoff.h"

#include "gtest/gtest.h"

namespace craft {
namespace {

TEST(BackoffTest, DelaysStayUnderAGrowingCappedBound) {
  Backoff backoff(Backoff::Options{}, /*seed=*/7);
  absl::Duration cap = absl::Milliseconds(100);
  for (int attempt = 0; attempt < 20; ++attempt) {
    EXPECT_EQ(backoff.cap(), cap) << attempt;
    const absl::Duration delay = backoff.NextDelay();
    EXPECT_GE(delay, absl::ZeroDuration()) << attempt;
    EXPECT_LE(delay, cap) << attempt;
    cap = std::min(cap * 2, absl::Seconds(5));
  }
  EXPECT_EQ(backoff.cap(), absl::Seconds(5));
  EXPECT_EQ(backoff.attempts(), 20);
}

TEST(BackoffTest, FullJitterSpreadsOverTheWholeRange) {
  Backoff::Options options;
  options.initial = absl::Seconds(1);
  options.max = absl::Seconds(1);
  Backoff backoff(options, /*seed=*/42);
  absl::Duration low = absl::InfiniteDuration(), high = absl::ZeroDuration();
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration delay = backoff.NextDelay();
    low = std::min(low, delay);
    high = std::max(high, delay);
  }
  EXPECT_LT(low, absl::Milliseconds(50));
  EXPECT_GT(high, absl::Milliseconds(950));
}

TEST(BackoffTest, ResetReturnsToTheInitialCap) {
  Backoff backoff(Backoff::Options{}, /*seed=*/1);
  for (int i = 0; i < 10; ++i) backoff.NextDelay();
  EXPECT_EQ(backoff.cap(), absl::Seconds(5));
  backoff.Reset();
  EXPECT_EQ(backoff.cap(), absl::Milliseconds(100));
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_LE(backoff.NextDelay(), absl::Milliseconds(100));
}

TEST(BackoffTest, SameSeedSameDelays) {
  Backoff a(Backoff::Options{}, /*seed=*/99);
  Backoff b(Backoff::Options{}, /*seed=*/99);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.NextDelay(), b.NextDelay());
}

TEST(BackoffTest, OptionsAreValidated) {
  EXPECT_TRUE(Backoff::Options{}.Validate().ok());
  Backoff::Options zero;
  zero.initial = absl::ZeroDuration();
  EXPECT_FALSE(zero.Validate().ok());
  Backoff::Options inverted;
  inverted.max = absl::Milliseconds(10);
  EXPECT_FALSE(inverted.Validate().ok());
  Backoff::Options shrinking;
  shrinking.multiplier = 0.5;
  EXPECT_FALSE(shrinking.Validate().ok());
}

}  // namespace
}  // namespace craft
