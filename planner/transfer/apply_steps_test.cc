#include "planner/transfer/apply_steps.h"

#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "planner/plan.h"
#include "planner/synth/synth.h"
#include "planner/transfer/movement.h"

namespace craft::planner {
namespace {

constexpr int64_t kBytes = 1000;

LoadTrace Synth(uint64_t seed) {
  SynthOptions options;
  options.num_layers = 4;
  options.num_experts = 16;
  options.top_k = 2;
  options.num_windows = 24;
  options.tokens_per_window = 256;
  options.min_hot_ratio = 2;
  options.max_hot_ratio = 7;
  options.seed = seed;
  absl::StatusOr<LoadTrace> trace = SynthesizeTrace(options);
  EXPECT_TRUE(trace.ok()) << trace.status();
  return *trace;
}

// A layout planned on one load, re-planned incrementally on a drifted one.
struct Drifted {
  Layout committed;
  IncrementalPlan plan;
};

Drifted MakeDrifted(uint64_t seed) {
  PlanOptions options;
  options.cluster = {8, 2};
  options.budget = 2;
  absl::StatusOr<PlanResult> planned = Plan(Synth(seed), options);
  EXPECT_TRUE(planned.ok()) << planned.status();
  IncrementalOptions incremental;
  incremental.budget = 2;
  incremental.bytes_per_expert = kBytes;
  absl::StatusOr<IncrementalPlan> plan =
      PlanIncremental(planned->layout, Synth(seed + 1000), incremental);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return {planned->layout, *plan};
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
