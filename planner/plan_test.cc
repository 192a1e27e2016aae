// Tests of the algorithm dispatch: every algorithm plans the same loads and
// the comparisons the paper makes hold on a skewed trace.
#include "planner/plan.h"

#include <numeric>

#include "gtest/gtest.h"
#include "planner/replay.h"

namespace craft::planner {
namespace {

// 6 layers x 16 experts; odd layers have one expert at 20x the mean.
LoadTrace Skewed() {
  LoadTrace trace(6, 16, 2);
  for (int b = 0; b < 2; ++b) {
    for (int l = 0; l < 6; ++l) {
      for (int e = 0; e < 16; ++e) {
        trace.mutable_window(b, l)[e] = (l % 2 == 1 && e == l) ? 2000 : 100 + 7 * e + b;
      }
    }
  }
  trace.SetAggregateFromWindows();
  return trace;
}

PlanOptions Options(Algorithm algorithm) {
  PlanOptions options;
  options.algorithm = algorithm;
  options.cluster = {8, 2};
  options.budget = 1;
  return options;
}

TEST(PlanTest, AlgorithmNamesRoundTrip) {
  for (Algorithm a :
       {Algorithm::kNone, Algorithm::kEplb, Algorithm::kCraft, Algorithm::kCraftPaper}) {
    auto parsed = ParseAlgorithm(AlgorithmName(a));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_EQ(ParseAlgorithm("random").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PlanTest, EveryAlgorithmPlansAValidLayout) {
  const LoadTrace trace = Skewed();
  for (Algorithm a :
       {Algorithm::kNone, Algorithm::kEplb, Algorithm::kCraft, Algorithm::kCraftPaper}) {
    auto plan = Plan(trace, Options(a));
    ASSERT_TRUE(plan.ok()) << AlgorithmName(a) << ": " << plan.status();
    EXPECT_TRUE(plan->layout.Validate().ok()) << AlgorithmName(a);
    EXPECT_EQ(plan->layout.TotalRedundantSlots(),
              std::accumulate(plan->replicas_per_layer.begin(), plan->replicas_per_layer.end(), 0));
  }
}

TEST(PlanTest, CraftMatchesEplbBalanceWithFarFewerReplicas) {
  const LoadTrace trace = Skewed();
  auto none = Plan(trace, Options(Algorithm::kNone));
  auto eplb = Plan(trace, Options(Algorithm::kEplb));
  PlanOptions craft_options = Options(Algorithm::kCraft);
  craft_options.budget = 3;  // half of EPLB's
  auto craft = Plan(trace, craft_options);
  ASSERT_TRUE(none.ok() && eplb.ok() && craft.ok());
  // EPLB's default: D redundant slots in every layer, R = L.
  EXPECT_EQ(eplb->layout.TotalRedundantSlots(), 6 * 8);
  EXPECT_EQ(craft->layout.TotalRedundantSlots(), 3 * 8);
  const double b_none = EvaluateLayout(none->layout, trace)->mean_balancedness;
  const double b_eplb = EvaluateLayout(eplb->layout, trace)->mean_balancedness;
  const double b_craft = EvaluateLayout(craft->layout, trace)->mean_balancedness;
  EXPECT_GT(b_craft, b_none);
  EXPECT_GT(b_eplb, b_none);
  EXPECT_GE(b_craft, b_eplb);
}

TEST(PlanTest, RejectsBadRequests) {
  LoadTrace negative = Skewed();
  negative.mutable_aggregate(0)[0] = -5;
  EXPECT_EQ(Plan(negative, Options(Algorithm::kCraft)).status().code(),
            absl::StatusCode::kInvalidArgument);
  PlanOptions bad_cluster = Options(Algorithm::kNone);
  bad_cluster.cluster = {6, 4};
  EXPECT_FALSE(Plan(Skewed(), bad_cluster).ok());
  PlanOptions eplb_no_dup = Options(Algorithm::kEplb);
  eplb_no_dup.forbid_duplicates = true;
  EXPECT_FALSE(Plan(Skewed(), eplb_no_dup).ok());
  PlanOptions eplb_uneven = Options(Algorithm::kEplb);
  eplb_uneven.redundant_per_layer = 3;  // 19 slots over 8 GPUs
  EXPECT_FALSE(Plan(Skewed(), eplb_uneven).ok());
  PlanOptions eplb_negative = Options(Algorithm::kEplb);
  eplb_negative.redundant_per_layer = -8;
  EXPECT_FALSE(Plan(Skewed(), eplb_negative).ok());
}

}  // namespace
}  // namespace craft::planner
