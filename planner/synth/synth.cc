#include "planner/synth/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace craft::planner {
namespace {

// Trace size limit, matching what the JSON reader accepts (2 GiB of counts).
constexpr int64_t kMaxCells = int64_t{1} << 28;
// Nearly-uniform layers: the hottest expert's expected load over the mean.
constexpr double kUniformMinRatio = 1.5;
constexpr double kUniformMaxRatio = 2.5;
// A skewed layer has 1 to kMaxHotExperts hot experts; the hottest has the
// drawn ratio, the others a fraction of it in [kMinSecondaryShare, kMaxSecondaryShare].
constexpr int kMaxHotExperts = 3;
constexpr double kMinSecondaryShare = 0.2;
constexpr double kMaxSecondaryShare = 0.6;
// Spread of the base popularity (log-normal) before it is shaped.
constexpr double kBaseLogSigma = 1.0;
// Inclusion probabilities are kept inside (0, 1): an expert certain to be
// picked by every token has an infinite sampling weight, and one with zero
// weight could leave a token unable to find top_k distinct experts.
constexpr double kMinInclusion = 1e-9;
constexpr double kMaxInclusion = 0.999;
// Alias draws that may hit already-picked experts before a token falls back to
// an exact scan over the remaining ones (bounds the time per token when a few
// experts hold most of the weight).
constexpr int kMaxRejections = 32;
constexpr double kTwoPi = 6.283185307179586;

// Random numbers from std::mt19937_64 with hand-written transforms, because
// the standard fixes the engine's output but not the distributions'.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  // 32 random bits. Each engine output serves two calls: the engine is most
  // of the sampler's time, and 32 bits resolve an alias draw finely enough.
  uint32_t Next32() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const uint64_t bits = engine_();
    spare_ = static_cast<uint32_t>(bits >> 32);
    has_spare_ = true;
    return static_cast<uint32_t>(bits);
  }
  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1p-53; }
  double Uniform(double low, double high) { return low + (high - low) * Uniform(); }
  // Uniform in [0, n), by multiply-shift (bias below n / 2^64).
  int Below(int n) {
    return static_cast<int>((static_cast<unsigned __int128>(engine_()) * n) >> 64);
  }
  // Standard normal, by Box-Muller (one of the pair is discarded: simplicity
  // over speed, normals are drawn O(experts) times per window).
  double Normal() {
    const double radius = std::sqrt(-2.0 * std::log(1.0 - Uniform()));
    return radius * std::cos(kTwoPi * Uniform());
  }

 private:
  std::mt19937_64 engine_;
  uint32_t spare_ = 0;
  bool has_spare_ = false;
};

// SplitMix64's finaliser: decorrelates the seeds of the per-layer streams.
uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + (stream + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The first `count` entries of a random permutation of [0, n).
std::vector<int> SampleIndices(int n, int count, Rng& rng) {
  std::vector<int> indices(n);
  std::iota(indices.begin(), indices.end(), 0);
  for (int i = 0; i < count; ++i) std::swap(indices[i], indices[i + rng.Below(n - i)]);
  indices.resize(count);
  return indices;
}

// Walker's alias method (Vose's construction): O(1) draws from a fixed
// discrete distribution, 32 random bits per draw.
class AliasTable {
 public:
  explicit AliasTable(absl::Span<const double> weights) : columns_(weights.size()) {
    const int n = static_cast<int>(weights.size());
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::vector<double> scaled(n);
    std::vector<int> small, large;
    for (int i = 0; i < n; ++i) {
      scaled[i] = weights[i] * n / total;
      columns_[i].alias = i;
      (scaled[i] < 1.0 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      const int s = small.back(), l = large.back();
      small.pop_back();
      SetThreshold(s, scaled[s]);
      columns_[s].alias = l;
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // What is left is 1 up to rounding.
    for (int i : small) SetThreshold(i, 1.0);
    for (int i : large) SetThreshold(i, 1.0);
  }

  int Sample(uint32_t random) const {
    // The high half of random * n picks the column; the low half is a uniform
    // fraction within it, so one 32-bit draw serves both.
    const uint64_t product = static_cast<uint64_t>(random) * columns_.size();
    const int column = static_cast<int>(product >> 32);
    const Column& entry = columns_[column];
    // Branch-free select: the comparison is a coin flip the CPU cannot predict.
    const int keep_mask = -static_cast<int>(static_cast<uint32_t>(product) < entry.threshold);
    return (column & keep_mask) | (entry.alias & ~keep_mask);
  }

 private:
  void SetThreshold(int i, double probability) {
    columns_[i].threshold =
        probability >= 1.0 ? UINT32_MAX : static_cast<uint32_t>(std::ldexp(probability, 32));
  }

  struct Column {
    uint32_t threshold;  // P(keep the column) x 2^32
    int alias;           // taken otherwise
  };
  std::vector<Column> columns_;
};

// Popularity ratios (mean 1) whose hottest is `hot_ratio` x the mean:
// log-normal draws raised to the power that gives that ratio. A power keeps
// the ranking and, unlike clipping, the smooth shape of the tail.
std::vector<double> ShapedRatios(int num_experts, double hot_ratio, Rng& rng) {
  std::vector<double> log_base(num_experts);
  for (double& x : log_base) x = kBaseLogSigma * rng.Normal();
  const double log_max = *std::max_element(log_base.begin(), log_base.end());
  // With base^alpha, max / mean = E / sum_e exp(alpha (log_e - log_max)): 1 at
  // alpha = 0, growing monotonically towards E, so bisection finds alpha.
  auto max_ratio = [&](double alpha) {
    double sum = 0.0;
    for (double x : log_base) sum += std::exp(alpha * (x - log_max));
    return num_experts / sum;
  };
  double low = 0.0, high = 1.0;
  while (max_ratio(high) < hot_ratio && high < 1e6) high *= 2;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (low + high);
    (max_ratio(mid) < hot_ratio ? low : high) = mid;
  }
  const double scale = max_ratio(low);
  std::vector<double> ratios(num_experts);
  for (int e = 0; e < num_experts; ++e) ratios[e] = scale * std::exp(low * (log_base[e] - log_max));
  return ratios;
}

// A skewed layer's ratios: a nearly uniform tail plus 1 to kMaxHotExperts hot
// experts at random ids, the hottest at `hot_ratio`. Real skewed MoE layers
// look like this: a few experts far above a tail near the mean.
std::vector<double> SkewedRatios(int num_experts, double hot_ratio, double tail_ratio, Rng& rng) {
  std::vector<double> ratios = ShapedRatios(num_experts, tail_ratio, rng);
  // Small layers get one hot expert: several would leave no tail.
  const int num_hot = std::min(1 + rng.Below(kMaxHotExperts), std::max(1, num_experts / 8));
  const std::vector<int> hot = SampleIndices(num_experts, num_hot, rng);
  std::vector<double> hot_ratios = {hot_ratio};
  double secondary = 0.0;
  for (int j = 1; j < num_hot; ++j) {
    hot_ratios.push_back(hot_ratio * rng.Uniform(kMinSecondaryShare, kMaxSecondaryShare));
    secondary += hot_ratios.back();
  }
  // The secondary hot experts take at most half of what the hottest leaves.
  const double secondary_cap = 0.5 * (num_experts - hot_ratio);
  if (secondary > secondary_cap) {
    for (int j = 1; j < num_hot; ++j) hot_ratios[j] *= secondary_cap / secondary;
  }
  double hot_total = 0.0;
  for (int j = 0; j < num_hot; ++j) {
    hot_total += hot_ratios[j];
    ratios[hot[j]] = 0.0;
  }
  // The tail keeps its shape and takes the rest of the mean-1 budget (there is
  // no tail when every expert is hot, as with a single expert).
  const double tail_total = std::accumulate(ratios.begin(), ratios.end(), 0.0);
  if (tail_total > 0) {
    for (double& r : ratios) r *= (num_experts - hot_total) / tail_total;
  }
  for (int j = 0; j < num_hot; ++j) ratios[hot[j]] = hot_ratios[j];
  return ratios;
}

// Sampling weights for one window: `ratios` moved by `log_drift` and
// renormalised to mean 1, then calibrated for sampling without replacement.
//
// A token picks top_k distinct experts, so an expert with ratio r is in a
// token's picks with probability pi = r * top_k / E (its load / tokens).
// Sequential sampling with weights w includes expert e with probability close
// to 1 - exp(-w_e t) for one t shared by all experts (Rosen's approximation
// for successive sampling), so w_e = -log(1 - pi_e) hits the target pi with
// t = 1, which also makes the pi sum to top_k as they must. Weights
// proportional to pi instead would under-serve hot experts, whose repeated
// draws are rejected.
std::vector<double> SamplingWeights(absl::Span<const double> ratios,
                                    absl::Span<const double> log_drift, int top_k) {
  const int num_experts = static_cast<int>(ratios.size());
  std::vector<double> drifted(num_experts);
  for (int e = 0; e < num_experts; ++e) drifted[e] = ratios[e] * std::exp(log_drift[e]);
  const double total = std::accumulate(drifted.begin(), drifted.end(), 0.0);
  std::vector<double> weights(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    const double inclusion = std::clamp(drifted[e] * top_k / total, kMinInclusion, kMaxInclusion);
    weights[e] = -std::log1p(-inclusion);
  }
  return weights;
}

// Draws tokens' top_k distinct experts: alias-table draws with rejection of
// repeats (the same distribution as sampling the not-yet-picked experts in
// proportion to their weights), falling back to an exact scan when rejections
// pile up.
class TokenSampler {
 public:
  TokenSampler(int num_experts, int top_k) : top_k_(top_k), stamp_(num_experts, 0) {}

  // Adds the picks of `tokens` tokens under `weights` to `counts`.
  void SampleWindow(absl::Span<const double> weights, int tokens, Rng& rng,
                    absl::Span<int64_t> counts) {
    const AliasTable table(weights);
    for (int t = 0; t < tokens; ++t) {
      ++token_;  // experts stamped with the current token are taken
      for (int pick = 0; pick < top_k_; ++pick) {
        const int expert = Pick(table, weights, rng);
        stamp_[expert] = token_;
        ++counts[expert];
      }
    }
  }

 private:
  int Pick(const AliasTable& table, absl::Span<const double> weights, Rng& rng) {
    for (int attempt = 0; attempt < kMaxRejections; ++attempt) {
      const int expert = table.Sample(rng.Next32());
      if (stamp_[expert] != token_) return expert;
    }
    return PickRemaining(weights, rng);
  }

  // Exact draw among the experts not yet picked for this token.
  int PickRemaining(absl::Span<const double> weights, Rng& rng) const {
    double total = 0.0;
    for (size_t e = 0; e < weights.size(); ++e) {
      if (stamp_[e] != token_) total += weights[e];
    }
    double target = rng.Uniform() * total;
    int last = -1;
    for (size_t e = 0; e < weights.size(); ++e) {
      if (stamp_[e] == token_) continue;
      last = static_cast<int>(e);
      target -= weights[e];
      if (target < 0) break;
    }
    return last;  // rounding can leave target >= 0 past the end
  }

  int top_k_;
  std::vector<uint64_t> stamp_;  // token that last picked each expert
  uint64_t token_ = 0;
};

// One layer of the trace, all windows, from the layer's own stream.
void SynthesizeLayer(const SynthOptions& options, int layer, bool skewed, LoadTrace& trace) {
  Rng rng(MixSeed(options.seed, static_cast<uint64_t>(layer)));
  const int num_experts = options.num_experts;
  // No expert can exceed E / top_k x the mean (it would need two picks per token).
  const double ratio_cap = static_cast<double>(num_experts) / options.top_k;
  const double tail_ratio = std::min(rng.Uniform(kUniformMinRatio, kUniformMaxRatio), ratio_cap);
  const std::vector<double> ratios =
      skewed ? SkewedRatios(num_experts, rng.Uniform(options.min_hot_ratio, options.max_hot_ratio),
                            tail_ratio, rng)
             : ShapedRatios(num_experts, tail_ratio, rng);
  std::vector<double> log_drift(num_experts, 0.0);
  TokenSampler sampler(num_experts, options.top_k);
  for (int b = 0; b < options.num_windows; ++b) {
    if (b > 0) {
      for (double& x : log_drift) x += options.drift * rng.Normal();
    }
    sampler.SampleWindow(SamplingWeights(ratios, log_drift, options.top_k),
                         options.tokens_per_window, rng, trace.mutable_window(b, layer));
  }
}

absl::Status ValidateOptions(const SynthOptions& o) {
  const std::pair<const char*, int> sizes[] = {{"num_layers", o.num_layers},
                                               {"num_experts", o.num_experts},
                                               {"top_k", o.top_k},
                                               {"num_windows", o.num_windows},
                                               {"tokens_per_window", o.tokens_per_window}};
  for (const auto& [name, value] : sizes) {
    if (value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, got ", value));
    }
  }
  if (o.top_k > o.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k (", o.top_k, ") exceeds num_experts (", o.num_experts, ")"));
  }
  const int64_t cells = int64_t{o.num_layers} * o.num_experts * (int64_t{o.num_windows} + 1);
  if (cells > kMaxCells) {
    return absl::InvalidArgumentError(
        absl::StrCat("the trace would have ", cells, " cells, over the limit of ", kMaxCells));
  }
  // Comparisons are written so that NaN fails them.
  if (!(o.skewed_layer_fraction >= 0 && o.skewed_layer_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("skewed_layer_fraction must be in [0, 1], got ", o.skewed_layer_fraction));
  }
  if (!(o.min_hot_ratio >= 1 && o.max_hot_ratio >= o.min_hot_ratio)) {
    return absl::InvalidArgumentError(absl::StrCat("need 1 <= min_hot_ratio <= max_hot_ratio, got ",
                                                   o.min_hot_ratio, " and ", o.max_hot_ratio));
  }
  const double ratio_cap = static_cast<double>(o.num_experts) / o.top_k;
  if (o.max_hot_ratio > ratio_cap) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_hot_ratio ", o.max_hot_ratio, " is unreachable: a token picks ", o.top_k,
                     " distinct experts of ", o.num_experts, ", so an expert gets at most ",
                     ratio_cap, "x the mean load"));
  }
  if (!(o.drift >= 0 && std::isfinite(o.drift))) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift must be finite and non-negative, got ", o.drift));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadTrace> SynthesizeTrace(const SynthOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;
  const int num_layers = options.num_layers;
  std::vector<bool> skewed(num_layers, false);
  Rng rng(MixSeed(options.seed, UINT64_MAX));  // a stream no layer uses
  const int num_skewed = static_cast<int>(std::lround(options.skewed_layer_fraction * num_layers));
  for (int layer : SampleIndices(num_layers, num_skewed, rng)) skewed[layer] = true;
  LoadTrace trace(num_layers, options.num_experts, options.num_windows);
  for (int l = 0; l < num_layers; ++l) SynthesizeLayer(options, l, skewed[l], trace);
  trace.SetAggregateFromWindows();
  return trace;
}

}  // namespace craft::planner
