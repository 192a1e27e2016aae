#include "gpu_worker/traffic.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "gpu_worker/random.h"
#include "planner/synth/synth.h"

namespace craft::gpu_worker {
namespace {

constexpr uint64_t kTrafficDomain = 0x746f6b656e73ULL;  // "tokens"
// Weight totals stay below this so a draw never overflows.
constexpr int64_t kMaxLayerWeight = int64_t{1} << 62;
constexpr int kSyntheticWindows = 16;
constexpr int kSyntheticTokensPerWindow = 4096;

bool Contains(absl::Span<const int> chosen, int expert) {
  return std::find(chosen.begin(), chosen.end(), expert) != chosen.end();
}

// The expert outside `chosen` at position `draw` of the remaining weight
// (draw < the weights not chosen yet): a walk over the experts.
int PickWeighted(absl::Span<const int64_t> weights, absl::Span<const int> chosen, uint64_t draw) {
  for (int e = 0; e < static_cast<int>(weights.size()); ++e) {
    if (Contains(chosen, e)) continue;
    const uint64_t w = static_cast<uint64_t>(weights[e]);
    if (draw < w) return e;
    draw -= w;
  }
  return -1;  // unreachable when draw < the remaining weight
}

// The `rank`-th expert (from 0) outside `chosen`.
int PickUniform(int num_experts, absl::Span<const int> chosen, uint64_t rank) {
  for (int e = 0; e < num_experts; ++e) {
    if (Contains(chosen, e)) continue;
    if (rank == 0) return e;
    --rank;
  }
  return -1;  // unreachable when rank < the experts left
}

}  // namespace

absl::StatusOr<Popularity> Popularity::FromTrace(planner::LoadTrace trace) {
  CRAFT_RETURN_IF_ERROR(trace.Validate());
  for (int w = 0; w < trace.num_replay_windows(); ++w) {
    for (int l = 0; l < trace.num_layers(); ++l) {
      int64_t total = 0;
      for (int64_t count : trace.replay_window(w, l)) {
        total += count;
        if (total > kMaxLayerWeight) {
          return absl::InvalidArgumentError(
              absl::StrCat("trace window ", w, " layer ", l, ": total count over 2^62"));
        }
      }
    }
  }
  return Popularity(std::move(trace));
}

absl::StatusOr<Popularity> Popularity::Synthetic(int num_layers, int num_experts, int top_k,
                                                 double skew, uint64_t seed) {
  if (!(skew > 1)) {
    planner::LoadTrace uniform(num_layers, num_experts);
    for (int l = 0; l < num_layers; ++l) {
      absl::Span<int64_t> weights = uniform.mutable_aggregate(l);
      std::fill(weights.begin(), weights.end(), 1);
    }
    return FromTrace(std::move(uniform));
  }
  planner::SynthOptions options;
  options.num_layers = num_layers;
  options.num_experts = num_experts;
  options.top_k = top_k;
  options.num_windows = kSyntheticWindows;
  options.tokens_per_window = kSyntheticTokensPerWindow;
  options.seed = seed;
  options.max_hot_ratio = std::min(skew, static_cast<double>(num_experts) / top_k);
  options.min_hot_ratio = options.max_hot_ratio;
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, planner::SynthesizeTrace(options));
  return FromTrace(std::move(trace));
}

absl::Span<const int64_t> Popularity::Weights(int64_t window_id, int layer) const {
  const int64_t n = trace_.num_replay_windows();
  return trace_.replay_window(static_cast<int>(((window_id % n) + n) % n), layer);
}

absl::StatusOr<TrafficGenerator> TrafficGenerator::Create(TrafficOptions options,
                                                          Popularity popularity) {
  if (options.tokens_per_window < 1 || options.tokens_per_window > kMaxTokensPerWindow) {
    return absl::InvalidArgumentError(absl::StrCat("tokens_per_window must be in [1, ",
                                                   kMaxTokensPerWindow, "], got ",
                                                   options.tokens_per_window));
  }
  if (options.top_k < 1 || options.top_k > popularity.num_experts()) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be in [1, ", popularity.num_experts(), "], got ", options.top_k));
  }
  return TrafficGenerator(options, std::move(popularity));
}

std::vector<int32_t> TrafficGenerator::SampleExperts(int64_t window_id, int layer) const {
  const int top_k = options_.top_k;
  const absl::Span<const int64_t> weights = popularity_.Weights(window_id, layer);
  int64_t layer_total = 0;
  for (int64_t w : weights) layer_total += w;

  SplitMix64 rng(HashWords({kTrafficDomain, options_.seed, static_cast<uint64_t>(window_id),
                            static_cast<uint64_t>(layer)}));
  std::vector<int32_t> experts;
  experts.reserve(static_cast<size_t>(options_.tokens_per_window) * top_k);
  for (int t = 0; t < options_.tokens_per_window; ++t) {
    const size_t token_begin = experts.size();
    uint64_t remaining = static_cast<uint64_t>(layer_total);
    for (int k = 0; k < top_k; ++k) {
      const absl::Span<const int32_t> chosen(experts.data() + token_begin, k);
      int expert;
      if (remaining > 0) {
        expert = PickWeighted(weights, chosen, rng.Below(remaining));
        remaining -= static_cast<uint64_t>(weights[expert]);
      } else {
        expert = PickUniform(num_experts(), chosen, rng.Below(num_experts() - k));
      }
      experts.push_back(expert);
    }
  }
  return experts;
}

std::vector<int> TrafficGenerator::RouteLayer(int64_t window_id, int layer,
                                              const RoutingTable& routing) const {
  const std::vector<int32_t> experts = SampleExperts(window_id, layer);
  std::vector<int> slots(experts.begin(), experts.end());
  const int top_k = options_.top_k;
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i] = routing.Route(layer, slots[i], window_id, static_cast<int>(i / top_k),
                             static_cast<int>(i % top_k));
  }
  return slots;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> TrafficGenerator::CountWindow(
    int64_t window_id, const RoutingTable& routing, const LocalLayout& mine,
    LoadCounter* counter) const {
  if (routing.num_layers() != num_layers() || mine.num_layers() != num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("layout of version ", mine.version, " has ",
                                                   mine.num_layers(), " layers, traffic has ",
                                                   num_layers()));
  }
  CRAFT_RETURN_IF_ERROR(counter->BeginWindow(window_id, mine, routing));
  for (int l = 0; l < num_layers(); ++l) {
    absl::Status counted = counter->Count(l, SampleExperts(window_id, l), options_.top_k);
    if (!counted.ok()) {
      counter->EndWindow().IgnoreError();  // closes the window; its counts are moot
      return counted;
    }
  }
  return counter->EndWindow();
}

}  // namespace craft::gpu_worker
