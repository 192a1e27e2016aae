#include "planner/craft/paper_heuristic.h"

#include <numeric>

#include "gtest/gtest.h"
#include "planner/craft/knapsack.h"
#include "planner/craft/test_traces.h"

namespace craft::planner {
namespace {

// A curve at {0, 4, 8, 16, 32} with the given per-replica benefits.
BenefitCurve CurveWithBenefits(std::vector<double> per_replica) {
  BenefitCurve curve;
  curve.replicas = PaperCandidates();
  curve.balancedness = {0.5};
  curve.max_gpu_load = {1.0};
  for (size_t k = 1; k < curve.replicas.size(); ++k) {
    curve.balancedness.push_back(0.5 + per_replica[k - 1] * curve.replicas[k]);
    curve.max_gpu_load.push_back(1.0);
  }
  return curve;
}

TEST(PaperHeuristicTest, FollowsTheArtifactsThresholdRule) {
  // Mean per-replica benefit t over all 16 terms = 0.01.
  const std::vector<BenefitCurve> curves = {
      CurveWithBenefits({0.0, 0.0, 0.0, 0.0}),          // never positive -> 0
      CurveWithBenefits({0.004, 0.003, 0.002, 0.001}),  // below t/2: first running max -> 4
      CurveWithBenefits({0.006, 0.006, 0.006, 0.002}),  // >= t/2 up to 16 -> 16
      CurveWithBenefits({0.03, 0.03, 0.03, 0.04}),      // >= t everywhere -> 32
  };
  EXPECT_EQ(SelectPaperReplicas(curves), (std::vector<int>{0, 4, 16, 32}));
}

TEST(PaperHeuristicTest, RunningMaximumIsNotUpdatedOnTheFirstBranch) {
  // t = 0.08 / 8 terms = 0.01. r=4: b >= t/2 (pick 4, max
  // stays 0); r=8: b < t/2 but > 0 = max (pick 8); r=16: not above the max
  // 0.004 -> stays 8. Updating the maximum at r=4 would have kept 4.
  const std::vector<BenefitCurve> curves = {
      CurveWithBenefits({0.006, 0.004, 0.001, 0.0}),
      CurveWithBenefits({0.02, 0.02, 0.029, 0.0}),
  };
  EXPECT_EQ(SelectPaperReplicas(curves)[0], 8);
}

TEST(PaperHeuristicTest, RoundFinalAllocDoublesTheSmallest) {
  // 4 + 8 + 0 = 12 -> target 16 with D = 8: 0 -> 1, 1 -> 2, 2 -> 4 would be 16 exactly.
  EXPECT_EQ(RoundFinalAlloc({4, 8, 0}, 8, 0), (std::vector<int>{4, 8, 4}));
  // Overshoot: 8 + 8 + 1 = 17 -> 24: 1 -> 2, 2 -> 4, 4 -> 8 (= 24).
  EXPECT_EQ(RoundFinalAlloc({8, 8, 1}, 8, 0), (std::vector<int>{8, 8, 8}));
  // Remainder only: 16 + 15 = 31 -> 32: doubling 15 would overshoot, add 1.
  EXPECT_EQ(RoundFinalAlloc({16, 15}, 8, 0), (std::vector<int>{16, 16}));
  // Already a multiple: unchanged. Uneven L x E shifts the target.
  EXPECT_EQ(RoundFinalAlloc({8, 8}, 8, 0), (std::vector<int>{8, 8}));
  EXPECT_EQ(RoundFinalAlloc({8, 8}, 8, 3), (std::vector<int>{13, 8}));
}

TEST(PaperHeuristicTest, DpIsAtLeastAsGoodOnItsOwnObjective) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const LoadTrace trace = testing::SkewedTrace(6, 16, 5, seed);
    PlanOptions options;
    options.algorithm = Algorithm::kCraftPaper;
    options.cluster = {8, 2};
    auto paper = PlanCraftPaper(trace, options);
    ASSERT_TRUE(paper.ok()) << paper.status();
    const std::vector<int> selected = SelectPaperReplicas(paper->curves);
    double heuristic_gain = 0;
    std::vector<std::vector<KnapsackOption>> groups;
    for (size_t l = 0; l < selected.size(); ++l) {
      const auto& curve = paper->curves[l];
      std::vector<KnapsackOption> options_l;
      for (size_t k = 0; k < curve.replicas.size(); ++k) {
        options_l.push_back({curve.replicas[k], curve.balancedness[k] - curve.balancedness[0]});
        if (curve.replicas[k] == selected[l]) heuristic_gain += options_l.back().value;
      }
      groups.push_back(options_l);
    }
    const int budget = std::accumulate(selected.begin(), selected.end(), 0);
    auto dp = MultipleChoiceKnapsack::Solve(groups, budget);
    ASSERT_TRUE(dp.ok());
    EXPECT_GE(dp->Best(budget)->total_value, heuristic_gain - 1e-12) << "seed " << seed;
    // The rounded plan gives equal memory.
    EXPECT_EQ((6 * 16 + std::accumulate(paper->replicas_per_layer.begin(),
                                        paper->replicas_per_layer.end(), 0)) %
                  8,
              0);
    EXPECT_TRUE(paper->layout.Validate().ok());
  }
}

}  // namespace
}  // namespace craft::planner
