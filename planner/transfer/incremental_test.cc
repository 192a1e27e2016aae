#include "planner/transfer/incremental.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "planner/initial_layout.h"
#include "planner/plan.h"
#include "planner/replay.h"
#include "planner/synth/synth.h"
#include "planner/transfer/internal/test_drift.h"
#include "planner/transfer/movement.h"

namespace craft::planner {
namespace {

constexpr int64_t kBytes = 1000;

using transfer_internal::Drift;
using transfer_internal::MakeDrift;
using transfer_internal::SynthTrace;

IncrementalOptions Options(int budget, double fraction = 1.0) {
  IncrementalOptions options;
  options.budget = budget;
  options.bytes_per_expert = kBytes;
  options.limit.max_moved_fraction = fraction;
  return options;
}

void ExpectEqualTotals(const Layout& layout, int slots_per_gpu) {
  for (int g = 0; g < layout.cluster.num_gpus; ++g) {
    ASSERT_EQ(layout.SlotsOnGpu(g), slots_per_gpu) << "GPU " << g;
  }
}

TEST(IncrementalTest, EveryPointIsValidWithEqualTotalsAndMatchesTheReplay) {
  const Drift drift = MakeDrift(1, 4, 16, {8, 2}, 2);
  absl::StatusOr<IncrementalPlan> plan =
      PlanIncremental(drift.committed, drift.drifted, Options(2));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_GT(plan->frontier.size(), 3u);
  const int slots = drift.committed.SlotsOnGpu(0);
  EXPECT_EQ(plan->slots_per_gpu, slots);
  // Every move, not only every point: apply them one by one.
  Layout layout = drift.committed;
  for (const IncrementalMove& move : plan->moves) {
    ASSERT_TRUE(ApplyMove(move, layout).ok());
    ASSERT_TRUE(layout.Validate().ok());
    ExpectEqualTotals(layout, slots);
  }
  for (int i = 0; i < static_cast<int>(plan->frontier.size()); ++i) {
    const FrontierPoint& point = plan->frontier[i];
    absl::StatusOr<Layout> at = LayoutAtPoint(drift.committed, *plan, i);
    ASSERT_TRUE(at.ok()) << at.status();
    absl::StatusOr<Movement> moved = CountMovement(drift.committed, *at, kBytes);
    ASSERT_TRUE(moved.ok());
    EXPECT_EQ(point.moved_replicas, moved->moved_replicas);
    EXPECT_EQ(point.new_slots, moved->new_slots);
    EXPECT_EQ(point.max_bytes_into_gpu, moved->max_bytes_into_gpu);
    absl::StatusOr<LayoutStats> stats = EvaluateLayout(*at, drift.drifted);
    ASSERT_TRUE(stats.ok());
    EXPECT_NEAR(point.predicted_balancedness, stats->mean_balancedness, 1e-9);
    EXPECT_NEAR(point.predicted_step_time, stats->step_time, 1e-6 * stats->step_time);
    if (i > 0) {
      EXPECT_GT(point.predicted_balancedness, plan->frontier[i - 1].predicted_balancedness);
    }
  }
}

TEST(IncrementalTest, LimitsAreNeverExceeded) {
  const Drift drift = MakeDrift(2, 4, 16, {8, 2}, 2);
  for (double fraction : {0.02, 0.05, 0.1, 0.3}) {
    for (int64_t replicas :
         {int64_t{1}, int64_t{3}, std::numeric_limits<int64_t>::max() / kBytes}) {
      IncrementalOptions options = Options(2, fraction);
      options.limit.max_bytes_into_gpu = replicas * kBytes;
      absl::StatusOr<IncrementalPlan> plan =
          PlanIncremental(drift.committed, drift.drifted, options);
      ASSERT_TRUE(plan.ok()) << plan.status();
      for (const FrontierPoint& point : plan->frontier) {
        EXPECT_TRUE(
            options.limit.Admits(point.moved_replicas, point.new_slots, point.max_bytes_into_gpu))
            << fraction << " " << replicas << ": " << point.moved_replicas << " of "
            << point.new_slots;
      }
    }
  }
}

TEST(IncrementalTest, ZeroLimitReturnsTheCommittedLayout) {
  const Drift drift = MakeDrift(3, 4, 16, {8, 2}, 2);
  for (IncrementalOptions options : {Options(2, 0.0), Options(2, 1.0)}) {
    if (options.limit.max_moved_fraction == 1.0) options.limit.max_bytes_into_gpu = 0;
    absl::StatusOr<IncrementalPlan> plan = PlanIncremental(drift.committed, drift.drifted, options);
    ASSERT_TRUE(plan.ok());
    ASSERT_EQ(plan->frontier.size(), 1u);
    EXPECT_EQ(plan->frontier[0].moved_replicas, 0);
    absl::StatusOr<Layout> at = LayoutAtPoint(drift.committed, *plan, 0);
    ASSERT_TRUE(at.ok());
    EXPECT_EQ(*at, drift.committed);
  }
}

TEST(IncrementalTest, AnOptimalLayoutStaysUnchanged) {
  // Every expert gets the same load in every window: one expert per slot on
  // every GPU is perfectly balanced, and no move can gain.
  LoadTrace trace(2, 8, 5);
  for (int w = 0; w < 5; ++w) {
    for (int l = 0; l < 2; ++l) {
      for (int64_t& count : trace.mutable_window(w, l)) count = 100;
    }
  }
  trace.SetAggregateFromWindows();
  absl::StatusOr<Layout> layout = ContiguousLayout(2, 8, {4, 2});
  ASSERT_TRUE(layout.ok());
  absl::StatusOr<IncrementalPlan> plan = PlanIncremental(*layout, trace, Options(0));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->frontier.size(), 1u);
  EXPECT_TRUE(plan->moves.empty());
  EXPECT_DOUBLE_EQ(plan->frontier[0].predicted_balancedness, 1.0);
}

TEST(IncrementalTest, GrowsTheInitialLayoutToTheBudget) {
  const LoadTrace trace = SynthTrace(4, 16, 5);
  absl::StatusOr<Layout> initial = ContiguousLayout(4, 16, {8, 2});
  ASSERT_TRUE(initial.ok());
  absl::StatusOr<IncrementalPlan> plan = PlanIncremental(*initial, trace, Options(3));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->slots_per_gpu, 4 * 16 / 8 + 3);
  // Points 1..3 are the grow steps: D replicas each, equal totals.
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(plan->frontier[i].moved_replicas, 8 * i);
    absl::StatusOr<Layout> at = LayoutAtPoint(*initial, *plan, i);
    ASSERT_TRUE(at.ok() && at->Validate().ok());
    ExpectEqualTotals(*at, 8 + i);
  }
  // A limit below one grow step keeps the initial layout's slot count.
  absl::StatusOr<IncrementalPlan> small = PlanIncremental(*initial, trace, Options(3, 7.0 / 88));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->slots_per_gpu, 8);
}

// Property: over random layouts and drifts, a larger limit never gives a less
// balanced prediction, whether the caller picks a point of one frontier or
// plans again under the larger limit.
TEST(IncrementalTest, LargerLimitsNeverPredictWorseBalance) {
  const double fractions[] = {0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.5, 1.0};
  for (uint64_t seed = 10; seed < 22; ++seed) {
    const int gpus = 4 << (seed % 3);
    const Drift drift = MakeDrift(seed, 2 + seed % 3, 16, {gpus, gpus / 4}, 1 + seed % 3);
    absl::StatusOr<IncrementalPlan> full =
        PlanIncremental(drift.committed, drift.drifted, Options(1 + seed % 3));
    ASSERT_TRUE(full.ok()) << full.status();
    double picked_before = -1, planned_before = -1;
    for (double fraction : fractions) {
      MoveLimit limit;
      limit.max_moved_fraction = fraction;
      const double picked = full->frontier[PickFrontierPoint(*full, limit)].predicted_balancedness;
      absl::StatusOr<IncrementalPlan> limited =
          PlanIncremental(drift.committed, drift.drifted, Options(1 + seed % 3, fraction));
      ASSERT_TRUE(limited.ok());
      const double planned = limited->frontier.back().predicted_balancedness;
      EXPECT_GE(picked, picked_before) << "seed " << seed << " fraction " << fraction;
      EXPECT_GE(planned, planned_before) << "seed " << seed << " fraction " << fraction;
      EXPECT_DOUBLE_EQ(picked, planned) << "a limited plan is a prefix of the full one";
      picked_before = picked;
      planned_before = planned;
    }
  }
}

TEST(IncrementalTest, IsDeterministic) {
  const Drift drift = MakeDrift(4, 3, 16, {8, 2}, 2);
  absl::StatusOr<IncrementalPlan> a = PlanIncremental(drift.committed, drift.drifted, Options(2));
  absl::StatusOr<IncrementalPlan> b = PlanIncremental(drift.committed, drift.drifted, Options(2));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->frontier.size(), b->frontier.size());
  absl::StatusOr<Layout> last_a = LayoutAtPoint(drift.committed, *a, a->frontier.size() - 1);
  absl::StatusOr<Layout> last_b = LayoutAtPoint(drift.committed, *b, b->frontier.size() - 1);
  ASSERT_TRUE(last_a.ok() && last_b.ok());
  EXPECT_EQ(*last_a, *last_b);
}

TEST(IncrementalTest, TheSameMovesOnAnyThreadCount) {
  const Drift drift = MakeDrift(6, 3, 16, {8, 2}, 2);
  IncrementalOptions one = Options(2);
  one.threads = 1;
  absl::StatusOr<IncrementalPlan> a = PlanIncremental(drift.committed, drift.drifted, one);
  ASSERT_TRUE(a.ok()) << a.status();
  for (int threads : {3, 0}) {
    IncrementalOptions many = Options(2);
    many.threads = threads;
    absl::StatusOr<IncrementalPlan> b = PlanIncremental(drift.committed, drift.drifted, many);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(a->frontier.size(), b->frontier.size()) << threads;
    EXPECT_EQ(*LayoutAtPoint(drift.committed, *a, a->frontier.size() - 1),
              *LayoutAtPoint(drift.committed, *b, b->frontier.size() - 1))
        << threads;
  }
  IncrementalOptions negative = Options(2);
  negative.threads = -1;
  EXPECT_EQ(PlanIncremental(drift.committed, drift.drifted, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IncrementalTest, RejectsBadInput) {
  const Drift drift = MakeDrift(5, 2, 16, {4, 1}, 1);
  auto code = [&](const Layout& layout, const LoadTrace& trace, const IncrementalOptions& o) {
    return PlanIncremental(layout, trace, o).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  for (double fraction : {-0.1, 1.5, std::nan("")}) {
    EXPECT_EQ(code(drift.committed, drift.drifted, Options(1, fraction)), kInvalid);
  }
  IncrementalOptions options = Options(1);
  options.limit.max_bytes_into_gpu = -1;
  EXPECT_EQ(code(drift.committed, drift.drifted, options), kInvalid);
  EXPECT_EQ(code(drift.committed, drift.drifted, Options(-1)), kInvalid);
  options = Options(1);
  options.bytes_per_expert = 0;
  EXPECT_EQ(code(drift.committed, drift.drifted, options), kInvalid);
  EXPECT_EQ(code(drift.committed, SynthTrace(3, 16, 1), Options(1)), kInvalid);  // shape
  Layout unequal = drift.committed;
  unequal.layers[0].slots_per_gpu[0] += 1;
  unequal.layers[0].slots_per_gpu[1] -= 1;
  EXPECT_EQ(code(unequal, drift.drifted, Options(1)), kInvalid);
  absl::StatusOr<IncrementalPlan> plan =
      PlanIncremental(drift.committed, drift.drifted, Options(1));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(LayoutAtPoint(drift.committed, *plan, -1).status().code(), kInvalid);
  EXPECT_EQ(LayoutAtPoint(drift.committed, *plan, plan->frontier.size()).status().code(), kInvalid);
}

}  // namespace
}  // namespace craft::planner

namespace craft::planner {
namespace {

IncrementalOptions UniformOptions(int redundant, double fraction = 1.0) {
  IncrementalOptions options = Options(0, fraction);
  options.uniform_redundant_per_layer = redundant;
  return options;
}

// Uniform re-plans (for SGLang and vLLM): grown one layer at a time to E + r
// slots, then swaps and replaces only, so every frontier point is a layout
// those engines load.
TEST(IncrementalTest, UniformPlansGrowLayerByLayerAndStayUniform) {
  const LoadTrace trace = SynthTrace(4, 16, 5);
  absl::StatusOr<Layout> initial = ContiguousLayout(4, 16, {8, 2});
  ASSERT_TRUE(initial.ok());
  absl::StatusOr<IncrementalPlan> plan = PlanIncremental(*initial, trace, UniformOptions(16));
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 2 grow steps of one slot on each of the 8 GPUs in each of the 4 layers.
  ASSERT_GT(plan->frontier.size(), 2u);
  for (int i = 1; i <= 2; ++i) EXPECT_EQ(plan->frontier[i].moved_replicas, 4 * 8 * i);
  EXPECT_EQ(plan->slots_per_gpu, 4 * (16 + 16) / 8);
  for (const IncrementalMove& move : plan->moves) EXPECT_NE(move.kind, MoveKind::kShift);
  for (int i = 0; i < static_cast<int>(plan->frontier.size()); ++i) {
    absl::StatusOr<Layout> at = LayoutAtPoint(*initial, *plan, i);
    ASSERT_TRUE(at.ok() && at->Validate().ok());
    EXPECT_TRUE(at->HasUniformSlots()) << "point " << i;
  }
  absl::StatusOr<Layout> last =
      LayoutAtPoint(*initial, *plan, static_cast<int>(plan->frontier.size()) - 1);
  ASSERT_TRUE(last.ok());
  for (const LayerPlacement& layer : last->layers) EXPECT_EQ(layer.num_slots(), 32);
  absl::StatusOr<LayoutStats> before = EvaluateLayout(*initial, trace);
  absl::StatusOr<LayoutStats> after = EvaluateLayout(*last, trace);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_GT(after->mean_balancedness, before->mean_balancedness);
}

TEST(IncrementalTest, UniformReplanOfAUniformPlanMovesLittle) {
  const LoadTrace committed_on = SynthTrace(4, 16, 7);
  const LoadTrace drifted = SynthTrace(4, 16, 1007);
  PlanOptions fresh;
  fresh.cluster = {8, 2};
  fresh.uniform = true;
  fresh.redundant_per_layer = 8;
  absl::StatusOr<PlanResult> committed = Plan(committed_on, fresh);
  ASSERT_TRUE(committed.ok()) << committed.status();
  absl::StatusOr<IncrementalPlan> plan =
      PlanIncremental(committed->layout, drifted, UniformOptions(8, 0.1));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_GT(plan->frontier.size(), 1u);  // the drift pays for some moves
  const int point = PickFrontierPoint(*plan, UniformOptions(8, 0.1).limit);
  EXPECT_LE(plan->frontier[point].moved_fraction, 0.1);
  EXPECT_GT(plan->frontier[point].predicted_balancedness, plan->frontier[0].predicted_balancedness);
  absl::StatusOr<Layout> at = LayoutAtPoint(committed->layout, *plan, point);
  ASSERT_TRUE(at.ok());
  EXPECT_TRUE(at->HasUniformSlots());
}

TEST(IncrementalTest, UniformRefusesLayoutsItCannotKeepUniform) {
  const LoadTrace trace = SynthTrace(2, 16, 5);
  // GPU 0 holds 3 slots of layer 0, GPU 1 one: equal totals, not uniform.
  absl::StatusOr<Layout> uneven = ContiguousLayout(2, 16, {8, 2});
  ASSERT_TRUE(uneven.ok());
  LayerPlacement& layer = uneven->layers[0];
  layer.slots_per_gpu[0] = 3;
  layer.slots_per_gpu[1] = 1;
  ASSERT_TRUE(uneven->Validate().ok());
  absl::StatusOr<IncrementalPlan> plan = PlanIncremental(*uneven, trace, UniformOptions(8));
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("not uniform"), std::string::npos) << plan.status();

  absl::StatusOr<Layout> even = ContiguousLayout(2, 16, {8, 2});
  ASSERT_TRUE(even.ok());
  plan = PlanIncremental(*even, trace, UniformOptions(4));  // 20 slots over 8 GPUs
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("divisible"), std::string::npos) << plan.status();
}

}  // namespace
}  // namespace craft::planner
