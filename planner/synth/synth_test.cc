// Tests of the synthetic trace generator: determinism, conservation of picks,
// the skew profile and drift, and option validation.
#include "planner/synth/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "planner/load_trace.h"

namespace craft::planner {
namespace {

// A small trace; its ratios fit num_experts / top_k = 16.
SynthOptions SmallOptions() {
  SynthOptions options;
  options.num_layers = 8;
  options.num_experts = 64;
  options.top_k = 4;
  options.num_windows = 20;
  options.tokens_per_window = 256;
  options.min_hot_ratio = 4;
  options.max_hot_ratio = 12;
  return options;
}

LoadTrace Synthesize(const SynthOptions& options) {
  absl::StatusOr<LoadTrace> trace = SynthesizeTrace(options);
  EXPECT_TRUE(trace.ok()) << trace.status();
  return trace.ok() ? *std::move(trace) : LoadTrace();
}

bool SameWindows(const LoadTrace& a, const LoadTrace& b) {
  for (int w = 0; w < a.num_windows(); ++w) {
    for (int l = 0; l < a.num_layers(); ++l) {
      if (a.window(w, l) != b.window(w, l)) return false;
    }
  }
  return true;
}

// Hottest expert's aggregate load over the mean, per layer.
std::vector<double> HotRatios(const LoadTrace& trace) {
  std::vector<double> ratios;
  for (int l = 0; l < trace.num_layers(); ++l) {
    const auto counts = trace.aggregate(l);
    const double mean = static_cast<double>(trace.LayerTotal(l)) / trace.num_experts();
    ratios.push_back(*std::max_element(counts.begin(), counts.end()) / mean);
  }
  return ratios;
}

int CountIf(const std::vector<double>& values, const std::function<bool(double)>& predicate) {
  return static_cast<int>(std::count_if(values.begin(), values.end(), predicate));
}

TEST(SynthesizeTraceTest, IsDeterministicPerSeed) {
  const SynthOptions options = SmallOptions();
  const LoadTrace first = Synthesize(options);
  EXPECT_TRUE(SameWindows(first, Synthesize(options)));
  SynthOptions other = options;
  other.seed = 2;
  EXPECT_FALSE(SameWindows(first, Synthesize(other)));
}

TEST(SynthesizeTraceTest, EveryTokenPicksTopKDistinctExperts) {
  const SynthOptions options = SmallOptions();
  const LoadTrace trace = Synthesize(options);
  ASSERT_EQ(trace.num_windows(), options.num_windows);
  const int64_t picks = int64_t{options.tokens_per_window} * options.top_k;
  for (int l = 0; l < trace.num_layers(); ++l) {
    EXPECT_EQ(trace.LayerTotal(l), picks * options.num_windows);
    for (int w = 0; w < trace.num_windows(); ++w) {
      const auto counts = trace.window(w, l);
      int64_t sum = 0;
      for (int64_t c : counts) {
        EXPECT_LE(c, options.tokens_per_window);  // at most one pick per token
        sum += c;
      }
      EXPECT_EQ(sum, picks);
    }
  }
}

TEST(SynthesizeTraceTest, PicksEveryExpertWhenTopKIsAll) {
  SynthOptions options = SmallOptions();
  options.num_experts = 8;
  options.top_k = 8;
  options.min_hot_ratio = options.max_hot_ratio = 1;
  const LoadTrace trace = Synthesize(options);
  for (int w = 0; w < trace.num_windows(); ++w) {
    for (int64_t c : trace.window(w, 0)) EXPECT_EQ(c, options.tokens_per_window);
  }
}

TEST(SynthesizeTraceTest, HandlesASingleExpert) {
  SynthOptions options = SmallOptions();
  options.num_experts = 1;
  options.top_k = 1;
  options.min_hot_ratio = options.max_hot_ratio = 1;
  const LoadTrace trace = Synthesize(options);
  for (int l = 0; l < trace.num_layers(); ++l) {
    EXPECT_EQ(trace.aggregate(l)[0], int64_t{options.tokens_per_window} * options.num_windows);
  }
}

TEST(SynthesizeTraceTest, StaysDistinctWhenOneExpertIsLeft) {
  // Near-complete picks exercise the exact fallback after repeated rejections.
  SynthOptions options = SmallOptions();
  options.num_experts = 8;
  options.top_k = 7;
  options.min_hot_ratio = 1;
  options.max_hot_ratio = 8.0 / 7;
  options.skewed_layer_fraction = 1;
  const LoadTrace trace = Synthesize(options);
  for (int l = 0; l < trace.num_layers(); ++l) {
    for (int w = 0; w < trace.num_windows(); ++w) {
      for (int64_t c : trace.window(w, l)) EXPECT_LE(c, options.tokens_per_window);
    }
  }
}

TEST(SynthesizeTraceTest, DefaultSkewMixesHotAndNearlyUniformLayers) {
  SynthOptions options;  // 58 layers x 256 experts, top-8, hot ratios in [10, 30]
  options.num_windows = 2;
  const std::vector<double> ratios = HotRatios(Synthesize(options));
  // Half the layers are skewed. Measured ratios sit within a few percent of
  // the targets; drift and sampling noise account for the margins.
  EXPECT_EQ(CountIf(ratios, [](double r) { return r >= 9.5; }), 29);
  EXPECT_EQ(CountIf(ratios, [](double r) { return r <= 3.0; }), 29);
  EXPECT_GE(CountIf(ratios, [](double r) { return r >= 10.0; }), 25);
  EXPECT_GE(CountIf(ratios, [](double r) { return r >= 20.0; }), 1);
  EXPECT_EQ(CountIf(ratios, [](double r) { return r > 31.0; }), 0);
  EXPECT_GE(CountIf(ratios, [](double r) { return r >= 1.3; }), 58);
}

TEST(SynthesizeTraceTest, SkewedLayerFractionSelectsLayers) {
  SynthOptions options;
  options.num_layers = 6;
  options.num_windows = 1;
  options.skewed_layer_fraction = 0;
  const std::vector<double> uniform = HotRatios(Synthesize(options));
  EXPECT_EQ(CountIf(uniform, [](double r) { return r <= 3.0; }), 6);
  options.skewed_layer_fraction = 1;
  const std::vector<double> skewed = HotRatios(Synthesize(options));
  EXPECT_EQ(CountIf(skewed, [](double r) { return r >= 9.5; }), 6);
}

// Sum over experts of |share in window a - share in window b| for a layer.
double ShareDistance(const LoadTrace& trace, int layer, int a, int b) {
  const auto x = trace.window(a, layer);
  const auto y = trace.window(b, layer);
  const double total = static_cast<double>(trace.LayerTotal(layer)) / trace.num_windows();
  double distance = 0;
  for (size_t e = 0; e < x.size(); ++e) distance += std::abs(x[e] - y[e]) / total;
  return distance;
}

TEST(SynthesizeTraceTest, DriftMovesPopularityAcrossWindows) {
  SynthOptions options = SmallOptions();
  options.tokens_per_window = 4096;
  options.drift = 0;
  const LoadTrace steady = Synthesize(options);
  options.drift = 0.2;
  const LoadTrace drifting = Synthesize(options);
  const int last = options.num_windows - 1;
  for (int l = 0; l < options.num_layers; ++l) {
    // Without drift, first and last window differ by sampling noise only.
    EXPECT_GT(ShareDistance(drifting, l, 0, last), 2 * ShareDistance(steady, l, 0, last)) << l;
  }
}

TEST(SynthesizeTraceTest, RejectsBadOptions) {
  const std::vector<std::function<void(SynthOptions&)>> breakers = {
      [](SynthOptions& o) { o.num_layers = 0; },
      [](SynthOptions& o) { o.num_experts = -1; },
      [](SynthOptions& o) { o.top_k = 0; },
      [](SynthOptions& o) { o.num_windows = 0; },
      [](SynthOptions& o) { o.tokens_per_window = 0; },
      [](SynthOptions& o) { o.top_k = 65; },
      [](SynthOptions& o) { o.skewed_layer_fraction = 1.5; },
      [](SynthOptions& o) { o.skewed_layer_fraction = std::nan(""); },
      [](SynthOptions& o) { o.min_hot_ratio = 0.5; },
      [](SynthOptions& o) { o.max_hot_ratio = 3; },   // below min_hot_ratio (4)
      [](SynthOptions& o) { o.max_hot_ratio = 17; },  // above 64 experts / top-4
      [](SynthOptions& o) { o.drift = -0.1; },
      [](SynthOptions& o) { o.drift = std::numeric_limits<double>::infinity(); },
      [](SynthOptions& o) {  // 2^30 cells
        o.num_layers = 1 << 10;
        o.num_experts = 1 << 10;
        o.num_windows = (1 << 10) - 1;
      },
  };
  ASSERT_TRUE(SynthesizeTrace(SmallOptions()).ok());
  for (size_t i = 0; i < breakers.size(); ++i) {
    SynthOptions options = SmallOptions();
    breakers[i](options);
    EXPECT_EQ(SynthesizeTrace(options).status().code(), absl::StatusCode::kInvalidArgument) << i;
  }
  SynthOptions defaults_with_few_experts;
  defaults_with_few_experts.num_experts = 64;  // max_hot_ratio 30 > 64 / 8
  EXPECT_EQ(SynthesizeTrace(defaults_with_few_experts).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::planner
