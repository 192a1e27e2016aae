// Planner speed on production shapes: DeepSeek-V3/R1 (58 MoE layers x 256
// experts on 64 GPUs) and Kimi-K2 (60 x 384 on 96 GPUs), 1000 load windows
// each, on one thread unless a benchmark says otherwise, with the default
// candidates (every count 0..D). The CRAFT paper's Python takes about 10 s for
// the full plan.
//
//   bazel run -c opt //tests/benchmarks:planner_benchmark
#include <cstdint>
#include <random>

#include "benchmark/benchmark.h"
#include "planner/craft/benefit.h"
#include "planner/craft/craft_planner.h"
#include "planner/eplb/eplb.h"
#include "planner/plan.h"
#include "planner/synth/synth.h"
#include "planner/transfer/incremental.h"
#include "planner/transfer/stabilize.h"

namespace craft::planner {
namespace {

constexpr int kWindows = 1000;

struct Shape {
  int layers;
  int experts;
  int gpus;
};

constexpr Shape kDeepSeek = {58, 256, 64};
constexpr Shape kKimi = {60, 384, 96};

// 1000 windows: 50 synthesised ones (real top-8 sampling, skew and drift),
// each repeated with independent +-10% per-expert jitter, so set-up stays a
// few seconds while every window differs.
const LoadTrace& TraceFor(const Shape& shape) {
  static LoadTrace deepseek, kimi;
  LoadTrace& trace = shape.experts == kDeepSeek.experts ? deepseek : kimi;
  if (trace.num_layers() > 0) return trace;
  SynthOptions options;
  options.num_layers = shape.layers;
  options.num_experts = shape.experts;
  options.num_windows = 50;
  options.seed = 2026;
  const LoadTrace base = SynthesizeTrace(options).value();
  trace = LoadTrace(shape.layers, shape.experts, kWindows);
  std::mt19937_64 rng(7);
  for (int b = 0; b < kWindows; ++b) {
    for (int l = 0; l < shape.layers; ++l) {
      const auto from = base.window(b % base.num_windows(), l);
      auto to = trace.mutable_window(b, l);
      for (int e = 0; e < shape.experts; ++e) {
        to[e] = from[e] * static_cast<int64_t>(90 + rng() % 21) / 100;
      }
    }
  }
  trace.SetAggregateFromWindows();
  return trace;
}

PlanOptions CraftOptions(const Shape& shape) {
  PlanOptions options;
  options.algorithm = Algorithm::kCraft;
  options.cluster = {shape.gpus, shape.gpus / 8};
  options.budget = 8;
  options.threads = 1;  // one core: the figures compare across machines
  return options;
}

void BM_CraftFullPlan(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  const PlanOptions options = CraftOptions(shape);
  for (auto _ : state) benchmark::DoNotOptimize(Plan(trace, options).value());
}
BENCHMARK_CAPTURE(BM_CraftFullPlan, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CraftFullPlan, kimi, kKimi)->Unit(benchmark::kMillisecond);

// The same on N threads (PlanOptions::threads): wall time, the plan is the same.
void BM_CraftFullPlanThreads(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  PlanOptions options = CraftOptions(shape);
  options.threads = static_cast<int>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(Plan(trace, options).value());
}
BENCHMARK_CAPTURE(BM_CraftFullPlanThreads, deepseek, kDeepSeek)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_CraftAutoBudget(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  PlanOptions options = CraftOptions(shape);
  options.budget.reset();
  for (auto _ : state) benchmark::DoNotOptimize(Plan(trace, options).value());
}
BENCHMARK_CAPTURE(BM_CraftAutoBudget, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);

void BM_BenefitCurves(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  const ClusterShape cluster{shape.gpus, shape.gpus / 8};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        ComputeBenefitCurves(trace, cluster, DefaultCandidates(shape.gpus), {}).value());
  }
}
BENCHMARK_CAPTURE(BM_BenefitCurves, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);

void BM_CraftLayoutFromCounts(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  const ClusterShape cluster{shape.gpus, shape.gpus / 8};
  std::vector<int> replicas(shape.layers, 0);
  for (int l = 0; l < shape.layers; l += 4) replicas[l] = 32;  // 15 layers x 32 ~ R = 8
  for (auto _ : state) {
    benchmark::DoNotOptimize(BuildLayout(trace, cluster, replicas, {}).value());
  }
}
BENCHMARK_CAPTURE(BM_CraftLayoutFromCounts, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);

void BM_EplbDeepSeek(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  const ClusterShape cluster{shape.gpus, shape.gpus / 8};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        PlanEplb(trace, shape.experts + shape.gpus, /*num_groups=*/8, cluster).value());
  }
}
BENCHMARK_CAPTURE(BM_EplbDeepSeek, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EplbDeepSeek, kimi, kKimi)->Unit(benchmark::kMillisecond);

void BM_StabilizeReplan(benchmark::State& state, Shape shape) {
  const LoadTrace& trace = TraceFor(shape);
  const PlanOptions options = CraftOptions(shape);
  const Layout previous = Plan(trace.SliceWindows(0, kWindows / 2), options).value().layout;
  const Layout next = Plan(trace.SliceWindows(kWindows / 2, kWindows), options).value().layout;
  for (auto _ : state) benchmark::DoNotOptimize(Stabilize(previous, next).value());
}
BENCHMARK_CAPTURE(BM_StabilizeReplan, deepseek, kDeepSeek)->Unit(benchmark::kMillisecond);

// The incremental planner on the same trace and shape as BM_CraftFullPlan,
// from a layout planned on loads with other hot experts (another seed): the
// hard case, where it moves the most. Limited to 15% of the slots moved (the
// operating point) and unlimited (the whole frontier). It must take no longer
// than the fresh plan.
void BM_IncrementalReplan(benchmark::State& state, Shape shape, double max_moved_fraction) {
  const LoadTrace& trace = TraceFor(shape);
  SynthOptions other;
  other.num_layers = shape.layers;
  other.num_experts = shape.experts;
  other.num_windows = 50;
  other.seed = 2027;
  const Layout committed = Plan(SynthesizeTrace(other).value(), CraftOptions(shape)).value().layout;
  IncrementalOptions options;
  options.budget = 8;
  options.limit.max_moved_fraction = max_moved_fraction;
  for (auto _ : state) {
    benchmark::DoNotOptimize(PlanIncremental(committed, trace, options).value());
  }
}
BENCHMARK_CAPTURE(BM_IncrementalReplan, deepseek_15pct, kDeepSeek, 0.15)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_IncrementalReplan, kimi_15pct, kKimi, 0.15)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_IncrementalReplan, deepseek_unlimited, kDeepSeek, 1.0)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace craft::planner

BENCHMARK_MAIN();
