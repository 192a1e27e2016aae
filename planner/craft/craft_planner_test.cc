#include "planner/craft/craft_planner.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "planner/craft/benefit.h"
#include "planner/craft/slot_assignment.h"
#include "planner/craft/test_traces.h"
#include "planner/plan.h"
#include "planner/replay.h"

namespace craft::planner {
namespace {

PlanOptions CraftOptions(ClusterShape cluster, int budget) {
  PlanOptions options;
  options.algorithm = Algorithm::kCraft;
  options.cluster = cluster;
  options.budget = budget;
  return options;
}

TEST(CraftPlannerTest, RandomPlansKeepEveryInvariant) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    const int nodes = 1 + rng() % 2;
    const ClusterShape cluster{nodes * static_cast<int>(2 + rng() % 3), nodes};
    const int layers = 1 + rng() % 5;
    const int experts = cluster.num_gpus * static_cast<int>(1 + rng() % 3) + rng() % 3;
    const LoadTrace trace = testing::SkewedTrace(layers, experts, 1 + rng() % 4, rng());
    PlanOptions options = CraftOptions(cluster, static_cast<int>(rng() % 4));
    options.forbid_duplicates = trial % 2 == 0;
    options.objective = trial % 3 == 0 ? CraftObjective::kStepTime : CraftObjective::kBalancedness;
    auto plan = PlanCraft(trace, options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const Layout& layout = plan->layout;
    EXPECT_TRUE(layout.Validate(!options.forbid_duplicates).ok()) << "trial " << trial;
    const int redundant =
        std::accumulate(plan->replicas_per_layer.begin(), plan->replicas_per_layer.end(), 0);
    EXPECT_LE(redundant, RedundantCapacity(*options.budget, cluster.num_gpus,
                                           EqualMemoryResidue(layers, experts, cluster.num_gpus)));
    EXPECT_EQ(layout.TotalRedundantSlots(), redundant);
    for (int l = 0; l < layers; ++l) {
      EXPECT_EQ(layout.layers[l].num_slots(), experts + plan->replicas_per_layer[l]);
      for (int count : layout.layers[l].LogicalCounts(experts)) EXPECT_LE(count, cluster.num_gpus);
    }
    // Equal memory: every GPU holds the same number of slots over layers.
    for (int g = 1; g < cluster.num_gpus; ++g) {
      EXPECT_EQ(layout.SlotsOnGpu(g), layout.SlotsOnGpu(0)) << "trial " << trial;
    }
    // Deterministic.
    auto again = PlanCraft(trace, options);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->layout, layout);
  }
}

TEST(CraftPlannerTest, ReplicasGoToSkewedLayersAndBeatPlacementOnly) {
  const LoadTrace trace = testing::SkewedTrace(8, 32, 6, 42, 25.0);
  const ClusterShape cluster{16, 2};
  auto plan = PlanCraft(trace, CraftOptions(cluster, 2));
  ASSERT_TRUE(plan.ok()) << plan.status();
  int odd = 0, even = 0;
  for (int l = 0; l < 8; ++l) (l % 2 ? odd : even) += plan->replicas_per_layer[l];
  EXPECT_GT(odd, even);  // odd layers carry the hot expert
  auto none = BuildLayout(trace, cluster, std::vector<int>(8, 0), {});
  ASSERT_TRUE(none.ok());
  auto craft_stats = EvaluateLayout(plan->layout, trace);
  auto none_stats = EvaluateLayout(*none, trace);
  ASSERT_TRUE(craft_stats.ok() && none_stats.ok());
  EXPECT_GT(craft_stats->mean_balancedness, none_stats->mean_balancedness);
  EXPECT_LT(craft_stats->step_time, none_stats->step_time);
}

TEST(CraftPlannerTest, PredictedGainIsNeverNegative) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const LoadTrace trace = testing::SkewedTrace(5, 16, 3, seed);
    auto plan = PlanCraft(trace, CraftOptions({8, 1}, 1));
    ASSERT_TRUE(plan.ok());
    for (size_t l = 0; l < plan->curves.size(); ++l) {
      const BenefitCurve& curve = plan->curves[l];
      const auto k =
          std::find(curve.replicas.begin(), curve.replicas.end(), plan->replicas_per_layer[l]) -
          curve.replicas.begin();
      EXPECT_GE(curve.balancedness[k], curve.balancedness[0] - 1e-12);
    }
  }
}

TEST(CraftPlannerTest, AutoBudgetTradesBalanceForKvCache) {
  const LoadTrace trace = testing::SkewedTrace(8, 32, 4, 9, 25.0);
  PlanOptions options = CraftOptions({16, 2}, 0);
  options.budget.reset();
  options.memory = {80e9, 40e9, 88e6, 70272};
  auto plan = PlanCraft(trace, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_FALSE(plan->budget_sweep.empty());
  double best = 0;
  for (const BudgetPoint& point : plan->budget_sweep)
    best = std::max(best, point.relative_throughput);
  for (const BudgetPoint& point : plan->budget_sweep) {
    if (point.budget == plan->budget) {
      EXPECT_DOUBLE_EQ(point.relative_throughput, best);
    }
  }
  EXPECT_DOUBLE_EQ(plan->budget_sweep[0].relative_throughput, 1.0);
  EXPECT_GT(plan->budget, 0);  // a 25x hot expert is worth a few replicas

  // With memory so tight that every replica costs a large share of the KV
  // cache, auto-R replicates less.
  PlanOptions tight = options;
  tight.memory.hbm_bytes = 40e9 + 16 * 88e6 + 6 * 88e6;
  auto tight_plan = PlanCraft(trace, tight);
  ASSERT_TRUE(tight_plan.ok()) << tight_plan.status();
  EXPECT_LT(tight_plan->budget, plan->budget);
}

TEST(CraftPlannerTest, BadInputIsRejected) {
  const LoadTrace trace = testing::SkewedTrace(2, 8, 1, 1);
  EXPECT_FALSE(PlanCraft(trace, CraftOptions({4, 1}, -1)).ok());
  PlanOptions negative = CraftOptions({4, 1}, 1);
  negative.candidates = {0, -4};
  EXPECT_FALSE(PlanCraft(trace, negative).ok());
  PlanOptions too_many = CraftOptions({4, 1}, 1);
  too_many.candidates = {0, 8 * 3 + 1};
  EXPECT_FALSE(PlanCraft(trace, too_many).ok());
  PlanOptions no_memory = CraftOptions({4, 1}, 0);
  no_memory.budget.reset();
  no_memory.memory.hbm_bytes = 1e9;
  EXPECT_FALSE(PlanCraft(trace, no_memory).ok());
}

TEST(CraftPlannerTest, CoarseCandidatesAreRoundedUpToEqualMemory) {
  // 1 x 9 experts on 4 GPUs needs 3 redundant slots for equal memory, which
  // no mix of {0, 4} gives: the plan is padded instead.
  PlanOptions coarse = CraftOptions({4, 1}, 2);
  coarse.candidates = {0, 4};
  auto plan = PlanCraft(testing::SkewedTrace(1, 9, 1, 1), coarse);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (int g = 1; g < 4; ++g) EXPECT_EQ(plan->layout.SlotsOnGpu(g), plan->layout.SlotsOnGpu(0));
  EXPECT_LE(plan->replicas_per_layer[0], 2 * 4 + 3);
}

TEST(CraftPlannerTest, DefaultCandidatesAreEveryCountUpTo128GpusThenBounded) {
  std::vector<int> every(65);
  std::iota(every.begin(), every.end(), 0);
  EXPECT_EQ(DefaultCandidates(64), every);
  EXPECT_EQ(DefaultCandidates(128).size(), 129u);
  for (int gpus : {129, 1024, 4096}) {
    const std::vector<int> candidates = DefaultCandidates(gpus);
    EXPECT_EQ(candidates.size(), 129u) << gpus;
    EXPECT_TRUE(std::is_sorted(candidates.begin(), candidates.end()));
    EXPECT_EQ(std::adjacent_find(candidates.begin(), candidates.end()), candidates.end());
    EXPECT_EQ(candidates[64], 64);
    EXPECT_EQ(candidates.back(), gpus);
  }
}

// Sum over layers of the curves' balancedness at the given counts.
double CurveValue(const std::vector<BenefitCurve>& curves, const std::vector<int>& replicas) {
  double value = 0;
  for (size_t l = 0; l < curves.size(); ++l) {
    const auto& counts = curves[l].replicas;
    const auto at = std::find(counts.begin(), counts.end(), replicas[l]);
    if (at == counts.end()) return -1;  // not a candidate
    value += curves[l].balancedness[at - counts.begin()];
  }
  return value;
}

// Calls fn(replicas) for every (r_1..r_L) in [0, D]^L whose total fits the
// budget's capacity with equal memory: the brute force the DP is held to.
void ForEachFeasibleCount(int layers, int gpus, int64_t capacity, int residue,
                          const std::function<void(const std::vector<int>&)>& fn) {
  std::vector<int> replicas(layers, 0);
  while (true) {
    const int total = std::accumulate(replicas.begin(), replicas.end(), 0);
    if (total <= capacity && total % gpus == residue) fn(replicas);
    int l = 0;  // next tuple, odometer style
    while (l < layers && replicas[l] == gpus) replicas[l++] = 0;
    if (l == layers) return;
    ++replicas[l];
  }
}

// A small random shape for the brute-force checks: 2 or 4 GPUs on 1 or 2
// nodes, 2 or 3 layers of 3 to 7 experts, a budget of 1 to 3.
struct SmallCase {
  ClusterShape cluster;
  int layers = 0;
  int experts = 0;
  LoadTrace trace;
  int budget = 0;
};

SmallCase RandomSmallCase(std::mt19937& rng) {
  SmallCase c;
  const int nodes = 1 + rng() % 2;
  c.cluster = {nodes * 2, nodes};
  c.layers = 2 + rng() % 2;
  c.experts = 3 + rng() % 5;
  c.trace = testing::SkewedTrace(c.layers, c.experts, 1 + rng() % 4, rng(), 6.0);
  c.budget = 1 + static_cast<int>(rng() % 3);
  return c;
}

// The quality bar: with no --candidates the plan is the best one over
// every integer count per layer. Brute force enumerates every (r_1..r_L) in
// [0, D]^L that fits the budget with equal memory and compares values.
TEST(CraftPlannerTest, TheDefaultPlanIsTheBestOverEveryIntegerCount) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 12; ++trial) {
    const SmallCase small = RandomSmallCase(rng);
    const ClusterShape& cluster = small.cluster;
    const int layers = small.layers, experts = small.experts, budget = small.budget;
    const LoadTrace& trace = small.trace;
    auto plan = PlanCraft(trace, CraftOptions(cluster, budget));
    ASSERT_TRUE(plan.ok()) << plan.status();
    const int gpus = cluster.num_gpus;
    for (const BenefitCurve& curve : plan->curves) ASSERT_EQ(curve.replicas.size(), gpus + 1u);
    const int residue = EqualMemoryResidue(layers, experts, gpus);
    const int64_t capacity = RedundantCapacity(budget, gpus, residue);
    double best = -1;
    ForEachFeasibleCount(layers, gpus, capacity, residue, [&](const std::vector<int>& replicas) {
      best = std::max(best, CurveValue(plan->curves, replicas));
    });
    ASSERT_GT(best, 0) << "trial " << trial;
    EXPECT_NEAR(CurveValue(plan->curves, plan->replicas_per_layer), best, 1e-9)
        << "trial " << trial;
  }
}

// Under the roofline objective the DP minimises the summed modelled µs of
// the benefit curves; brute force over every (r_1..r_L) in [0, D]^L that fits
// the budget with equal memory must find nothing faster, in decode (every
// slot on its floor, so a replica costs) and in prefill (tokens dominate).
TEST(CraftPlannerTest, TheRooflinePlanIsTheFastestOverEveryIntegerCount) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 16; ++trial) {
    const SmallCase small = RandomSmallCase(rng);
    const ClusterShape& cluster = small.cluster;
    const int layers = small.layers, experts = small.experts, budget = small.budget;
    const LoadTrace& trace = small.trace;
    RooflineParams params;
    params.fixed_us = 70;
    params.per_token_us = 0.125;
    params.knee_sharpness = trial % 2 == 0 ? 0 : 4;
    params.gpu_fixed_us = 3;
    PlanOptions options = CraftOptions(cluster, budget);
    options.objective = CraftObjective::kRoofline;
    options.roofline.emplace(params, Regime{trial % 4 < 2 ? 16.0 : 4096.0, 2});
    auto plan = PlanCraft(trace, options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const int gpus = cluster.num_gpus;
    // Each curve point is the model on that candidate's placement.
    for (int l = 0; l < layers; ++l) {
      const BenefitCurve& curve = plan->curves[l];
      ASSERT_EQ(curve.modelled_us.size(), curve.replicas.size());
      const int k = static_cast<int>(rng() % curve.replicas.size());
      auto slots = AssignSlots({experts + curve.replicas[k]}, cluster);
      ASSERT_TRUE(slots.ok());
      auto placement =
          PlaceLayer(trace.aggregate(l), curve.replicas[k], (*slots)[0], cluster, PackingOptions{});
      ASSERT_TRUE(placement.ok());
      EXPECT_NEAR(curve.modelled_us[k], options.roofline->MeanLayerUs(*placement, trace, l), 1e-6);
    }
    const auto modelled = [&](const std::vector<int>& replicas) {
      double us = 0;
      for (int l = 0; l < layers; ++l) us += plan->curves[l].modelled_us[replicas[l]];
      return us;  // candidates are every count 0..D, so count r is at index r
    };
    const int residue = EqualMemoryResidue(layers, experts, gpus);
    const int64_t capacity = RedundantCapacity(budget, gpus, residue);
    double best = std::numeric_limits<double>::infinity();
    ForEachFeasibleCount(layers, gpus, capacity, residue, [&](const std::vector<int>& replicas) {
      best = std::min(best, modelled(replicas));
    });
    ASSERT_LT(best, std::numeric_limits<double>::infinity()) << "trial " << trial;
    EXPECT_NEAR(modelled(plan->replicas_per_layer), best, 1e-6) << "trial " << trial;
  }
}

TEST(CraftPlannerTest, RooflineNeedsAModel) {
  const LoadTrace trace = testing::SkewedTrace(2, 4, 2, 3, 6.0);
  PlanOptions options = CraftOptions({2, 1}, 1);
  options.objective = CraftObjective::kRoofline;
  EXPECT_EQ(Plan(trace, options).status().code(), absl::StatusCode::kInvalidArgument);
  RooflineParams params;
  params.per_token_us = 0.1;
  options.roofline.emplace(params, Regime{0, 8});  // no tokens
  EXPECT_EQ(Plan(trace, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CraftPlannerTest, AutoRUnderRooflineTradesModelledMilliseconds) {
  const LoadTrace trace = testing::SkewedTrace(4, 8, 3, 5, 6.0);
  PlanOptions options = CraftOptions({4, 1}, 0);
  options.budget.reset();
  options.objective = CraftObjective::kRoofline;
  options.memory.bytes_per_expert = 1e9;
  RooflineParams params;
  params.fixed_us = 70;
  params.per_token_us = 0.125;
  options.roofline.emplace(params, Regime{4096, 2});
  auto plan = PlanCraft(trace, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_FALSE(plan->budget_sweep.empty());
  for (const BudgetPoint& point : plan->budget_sweep) {
    EXPECT_GT(point.predicted_step_ms, 0);
    EXPECT_NEAR(
        point.relative_throughput,
        (point.kv_tokens_per_gpu / point.predicted_step_ms) /
            (plan->budget_sweep[0].kv_tokens_per_gpu / plan->budget_sweep[0].predicted_step_ms),
        1e-9);
  }
}

TEST(CraftPlannerTest, PlansAreTheSameOnAnyThreadCount) {
  const LoadTrace trace = testing::SkewedTrace(9, 24, 3, 8, 10.0);
  PlanOptions options = CraftOptions({12, 3}, 3);
  options.threads = 1;
  auto one = PlanCraft(trace, options);
  ASSERT_TRUE(one.ok()) << one.status();
  for (int threads : {2, 5, 0}) {
    options.threads = threads;
    auto many = PlanCraft(trace, options);
    ASSERT_TRUE(many.ok()) << many.status();
    EXPECT_EQ(many->layout, one->layout) << threads << " threads";
    EXPECT_EQ(many->replicas_per_layer, one->replicas_per_layer);
  }
}

}  // namespace
}  // namespace craft::planner
