#include "tools/loadgen/slot_loads.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/load_trace.h"
#include "planner/synth/synth.h"
#include "wire/layout_delta.h"
#include "wire/layout_proto.h"

namespace craft::loadgen {
namespace {

// Tokens the popularity profile is sampled with: enough that every expert's
// share is measured to a few percent.
constexpr int kProfileTokens = 16384;

}  // namespace

absl::StatusOr<ExpertLoads> ExpertLoads::Synthesize(const PopularityOptions& options) {
  if (options.num_gpus <= 0 || options.tokens_per_gpu <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_gpus (", options.num_gpus,
                                                   ") and tokens_per_gpu (", options.tokens_per_gpu,
                                                   ") must be positive"));
  }
  planner::SynthOptions synth;
  synth.num_layers = options.num_layers;
  synth.num_experts = options.num_experts;
  synth.top_k = options.top_k;
  synth.num_windows = 1;
  synth.tokens_per_window = kProfileTokens;
  synth.seed = options.seed;
  if (options.top_k > 0) {
    synth.max_hot_ratio =
        std::min(options.hot_ratio, static_cast<double>(options.num_experts) / options.top_k);
    synth.min_hot_ratio = std::min(synth.min_hot_ratio, synth.max_hot_ratio);
  }
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, planner::SynthesizeTrace(synth));

  // The profile's counts sum to kProfileTokens x top_k per layer; scale them
  // to the whole cluster's tokens.
  const double scale = static_cast<double>(options.num_gpus) * options.tokens_per_gpu /
                       static_cast<double>(kProfileTokens);
  std::vector<double> expected;
  expected.reserve(static_cast<size_t>(options.num_layers) * options.num_experts);
  for (int l = 0; l < options.num_layers; ++l) {
    for (int64_t count : trace.aggregate(l)) expected.push_back(scale * static_cast<double>(count));
  }
  return ExpertLoads(options.num_layers, options.num_experts, std::move(expected));
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoads::Compute(const ExpertLoads& loads,
                                                                    const planner::Layout& layout) {
  if (layout.num_layers() != loads.num_layers() || layout.num_experts != loads.num_experts()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout shape ", layout.num_layers(), " x ", layout.num_experts,
        " does not match the model's ", loads.num_layers(), " x ", loads.num_experts()));
  }
  std::shared_ptr<SlotLoads> result(new SlotLoads());
  result->num_gpus_ = layout.cluster.num_gpus;
  for (const planner::LayerPlacement& placement : layout.layers) {
    const int layer = static_cast<int>(result->counts_.size());
    const std::vector<int> replicas = placement.LogicalCounts(layout.num_experts);
    std::vector<double>& counts = result->counts_.emplace_back();
    counts.reserve(placement.phy2log.size());
    for (int expert : placement.phy2log) {
      counts.push_back(loads.Expected(layer, expert) / replicas[expert]);
    }
    std::vector<int>& offsets = result->offsets_.emplace_back(1, 0);
    for (int slots : placement.slots_per_gpu) offsets.push_back(offsets.back() + slots);
  }
  return std::shared_ptr<const SlotLoads>(std::move(result));
}

absl::Span<const double> SlotLoads::Counts(int gpu, int layer) const {
  const std::vector<int>& offsets = offsets_[layer];
  return absl::MakeConstSpan(counts_[layer]).subspan(offsets[gpu], offsets[gpu + 1] - offsets[gpu]);
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoadCache::Get(const std::string& version,
                                                                    const planner::Layout& layout) {
  absl::MutexLock lock(&mu_);
  if (auto it = by_version_.find(version); it != by_version_.end()) return it->second;
  return ComputeLocked(version, layout);
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoadCache::Get(
    const craft::v1::Layout& layout) {
  // Parsed under the lock: the agents that receive one Prepare together wait
  // for the first instead of each parsing it again.
  absl::MutexLock lock(&mu_);
  if (auto it = by_version_.find(layout.version()); it != by_version_.end()) return it->second;
  CRAFT_ASSIGN_OR_RETURN(planner::Layout parsed, LayoutFromProto(layout));
  return ComputeLocked(layout.version(), parsed);
}

void SlotLoadCache::SetLoads(const ExpertLoads* loads) {
  absl::MutexLock lock(&mu_);
  loads_ = loads;
  by_version_.clear();  // the layouts stay: versions are recomputed from them
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoadCache::Get(const std::string& version) {
  absl::MutexLock lock(&mu_);
  if (auto it = by_version_.find(version); it != by_version_.end()) return it->second;
  auto layout = layouts_.find(version);
  if (layout == layouts_.end()) {
    return absl::NotFoundError(absl::StrCat("no layout of version ", version));
  }
  return ComputeLocked(version, *layout->second);
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoadCache::Get(
    const craft::v1::LayoutDelta& delta) {
  absl::MutexLock lock(&mu_);
  if (auto it = by_version_.find(delta.version()); it != by_version_.end()) return it->second;
  auto base = layouts_.find(delta.base_version());
  if (base == layouts_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("layout delta from unknown version ", delta.base_version()));
  }
  CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, ApplyLayoutDelta(*base->second, delta));
  return ComputeLocked(delta.version(), layout);
}

absl::StatusOr<std::shared_ptr<const SlotLoads>> SlotLoadCache::ComputeLocked(
    const std::string& version, const planner::Layout& layout) {
  CRAFT_ASSIGN_OR_RETURN(std::shared_ptr<const SlotLoads> slots,
                         SlotLoads::Compute(*loads_, layout));
  by_version_.emplace(version, slots);
  if (layouts_.count(version) == 0) {
    layouts_.emplace(version, std::make_shared<const planner::Layout>(layout));
  }
  return slots;
}

void AppendJittered(absl::Span<const double> base, double jitter, FastRng* rng,
                    google::protobuf::RepeatedField<int64_t>* out) {
  for (double count : base) {
    const double factor = 1.0 + jitter * (2.0 * rng->Uniform() - 1.0);
    out->Add(std::max<int64_t>(0, std::llround(count * factor)));
  }
}

}  // namespace craft::loadgen
