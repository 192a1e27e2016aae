#include "planner/parallel.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace craft::planner {
namespace {

TEST(ParallelForTest, RunsEveryIndexOnceOnAnyThreadCount) {
  for (int threads : {0, 1, 2, 7, 64}) {
    std::vector<std::atomic<int>> calls(1000);
    ASSERT_TRUE(ParallelFor(1000, threads, [&](int i) {
                  ++calls[i];
                  return absl::OkStatus();
                }).ok());
    for (const auto& count : calls) EXPECT_EQ(count.load(), 1) << threads << " threads";
  }
}

TEST(ParallelForTest, ReturnsTheLowestFailingIndexAndStillRunsTheRest) {
  std::atomic<int> ran{0};
  const absl::Status status = ParallelFor(100, 4, [&](int i) {
    ++ran;
    if (i == 70) return absl::InvalidArgumentError("seventy");
    if (i == 30) return absl::NotFoundError("thirty");
    return absl::OkStatus();
  });
  EXPECT_EQ(status, absl::NotFoundError("thirty"));
  EXPECT_EQ(ran.load(), 100);
}

TEST(ParallelForTest, NothingToDoIsOk) {
  EXPECT_TRUE(ParallelFor(0, 4, [](int) { return absl::InternalError("called"); }).ok());
}

TEST(ParallelForTest, ZeroThreadsMeansEveryCore) {
  EXPECT_GE(ResolveThreads(0), 1);
  EXPECT_EQ(ResolveThreads(3), 3);
}

}  // namespace
}  // namespace craft::planner
