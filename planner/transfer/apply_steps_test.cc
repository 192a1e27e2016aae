#include "planner/transfer/apply_steps.h"

#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "planner/transfer/internal/test_drift.h"
#include "planner/transfer/movement.h"

namespace craft::planner {
namespace {

constexpr int64_t kBytes = 1000;

// A layout planned on one load, re-planned incrementally on a drifted one.
struct Drifted {
  Layout committed;
  IncrementalPlan plan;
};

Drifted MakeDrifted(uint64_t seed) {
  transfer_internal::Drift drift = transfer_internal::MakeDrift(seed, 4, 16, {8, 2}, 2);
  IncrementalOptions incremental;
  incremental.budget = 2;
  incremental.bytes_per_expert = kBytes;
  absl::StatusOr<IncrementalPlan> plan =
      PlanIncremental(drift.committed, drift.drifted, incremental);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return {std::move(drift.committed), *std::move(plan)};
}

TEST(ApplyStepsTest, TheBestPointWeighsGainAgainstTransferTime) {
  const Drifted drifted = MakeDrifted(3);
  ASSERT_GT(drifted.plan.frontier.size(), 2u);
  // Moving is free: the point with the best modelled step time wins.
  const int free = BestNetBenefitPoint(drifted.plan, {600, 1e18});
  for (const FrontierPoint& point : drifted.plan.frontier) {
    EXPECT_GE(point.predicted_step_time, drifted.plan.frontier[free].predicted_step_time);
  }
  EXPECT_GT(free, 0);
  // Moving is all but impossible: nothing pays, stay put.
  EXPECT_EQ(BestNetBenefitPoint(drifted.plan, {600, 1e-9}), 0);
  // A gain that lasts no time pays nothing either.
  EXPECT_EQ(BestNetBenefitPoint(drifted.plan, {0, 1e18}), 0);
  EXPECT_EQ(NetBenefits(drifted.plan, {600, 1e9})[0], 0.0);
}

TEST(ApplyStepsTest, StepsFitTheHeadroomAndReachTheTarget) {
  for (uint64_t seed : {3, 4, 5}) {
    const Drifted drifted = MakeDrifted(seed);
    const int target = static_cast<int>(drifted.plan.frontier.size()) - 1;
    ASSERT_GT(target, 0);
    // Room for one expert per GPU per step: each step brings at most one.
    int from = 0;
    int steps = 0;
    while (from < target) {
      absl::StatusOr<int> next =
          FurthestPointWithin(drifted.committed, drifted.plan, from, target, kBytes, kBytes);
      ASSERT_TRUE(next.ok()) << next.status();
      ASSERT_GT(*next, from) << "seed " << seed << ": no progress from point " << from;
      absl::StatusOr<Layout> a = LayoutAtPoint(drifted.committed, drifted.plan, from);
      absl::StatusOr<Layout> b = LayoutAtPoint(drifted.committed, drifted.plan, *next);
      ASSERT_TRUE(a.ok() && b.ok());
      absl::StatusOr<Movement> moved = CountMovement(*a, *b, kBytes);
      ASSERT_TRUE(moved.ok()) << moved.status();
      EXPECT_LE(moved->max_bytes_into_gpu, kBytes);
      from = *next;
      ++steps;
    }
    EXPECT_GT(steps, 1) << "seed " << seed << ": one expert per GPU should take several steps";
    // Without a limit one step goes all the way.
    EXPECT_EQ(*FurthestPointWithin(drifted.committed, drifted.plan, 0, target,
                                   std::numeric_limits<int64_t>::max(), kBytes),
              target);
  }
}

TEST(ApplyStepsTest, NoRoomMeansNoProgressAndBadArgumentsAreRefused) {
  const Drifted drifted = MakeDrifted(3);
  const int last = static_cast<int>(drifted.plan.frontier.size()) - 1;
  EXPECT_EQ(*FurthestPointWithin(drifted.committed, drifted.plan, 0, last, 0, kBytes), 0);
  EXPECT_FALSE(FurthestPointWithin(drifted.committed, drifted.plan, 2, 1, kBytes, kBytes).ok());
  EXPECT_FALSE(
      FurthestPointWithin(drifted.committed, drifted.plan, 0, last + 1, kBytes, kBytes).ok());
  EXPECT_FALSE(FurthestPointWithin(drifted.committed, drifted.plan, 0, last, -1, kBytes).ok());
}

}  // namespace
}  // namespace craft::planner
