#include "server/load_store.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/replay.h"
#include "wire/version.h"

namespace craft::server {
namespace {

constexpr absl::string_view kReasonNames[kNumRejectReasons] = {
    "gpu_out_of_range", "gpu_not_on_node",  "unknown_version", "wrong_layer_count",
    "wrong_slot_count", "negative_count",   "count_too_large", "bad_window_id",
    "stale_window",     "duplicate_window", "clock_skew",
};

}  // namespace

absl::string_view RejectReasonName(RejectReason reason) {
  return kReasonNames[static_cast<int>(reason)];
}

LoadStore::LoadStore(const LoadStoreOptions& options, const LayoutHistory* layouts)
    : options_(options), num_gpus_(options.cluster.num_gpus), layouts_(layouts) {}

absl::Status LoadStore::Reject(RejectReason reason, absl::string_view message) {
  absl::MutexLock lock(&mu_);
  return RejectLocked(reason, message);
}

absl::Status LoadStore::RejectLocked(RejectReason reason, absl::string_view message) {
  ++rejected_[static_cast<int>(reason)];
  return absl::InvalidArgumentError(
      absl::StrCat("load window rejected (", RejectReasonName(reason), "): ", message));
}

absl::Status LoadStore::Ingest(const craft::v1::GpuWindow& window,
                               absl::Span<const int> node_gpus) {
  const int gpu = window.gpu();
  const std::string where = absl::StrCat("GPU ", gpu, " window ", window.window_id());
  if (gpu < 0 || gpu >= num_gpus_) {
    return Reject(RejectReason::kGpuOutOfRange,
                  absl::StrCat(where, ": GPU outside [0, ", num_gpus_, ")"));
  }
  if (!node_gpus.empty() && std::find(node_gpus.begin(), node_gpus.end(), gpu) == node_gpus.end()) {
    return Reject(RejectReason::kGpuNotOnNode, absl::StrCat(where, ": not a GPU of this node"));
  }
  if (window.window_id() < 0) {
    return Reject(RejectReason::kBadWindowId, absl::StrCat(where, ": negative window id"));
  }
  if (options_.clock != nullptr && options_.max_clock_skew > absl::ZeroDuration()) {
    CRAFT_RETURN_IF_ERROR(CheckTiming(window, where));
  }
  const std::string version = VersionOrInitial(window.layout_version());
  const std::shared_ptr<const planner::Layout> layout = layouts_->Find(version);
  if (layout == nullptr) {
    return Reject(RejectReason::kUnknownVersion,
                  absl::StrCat(where, ": unknown layout version '", version, "'"));
  }
  if (window.layers_size() != options_.num_layers) {
    return Reject(
        RejectReason::kWrongLayerCount,
        absl::StrCat(where, ": ", window.layers_size(), " layers, expected ", options_.num_layers));
  }
  for (int l = 0; l < options_.num_layers; ++l) {
    const auto& counts = window.layers(l).counts();
    const int slots = layout->layers[l].slots_per_gpu[gpu];
    if (counts.size() != slots) {
      return Reject(RejectReason::kWrongSlotCount,
                    absl::StrCat(where, " layer ", l, ": ", counts.size(), " counts, but GPU ", gpu,
                                 " has ", slots, " slots under version ", version));
    }
    for (int64_t count : counts) {
      if (count < 0) {
        return Reject(RejectReason::kNegativeCount,
                      absl::StrCat(where, " layer ", l, ": negative count ", count));
      }
      if (count > kMaxSlotCount) {
        return Reject(RejectReason::kCountTooLarge,
                      absl::StrCat(where, " layer ", l, ": count ", count, " exceeds 2^40"));
      }
    }
  }

  absl::MutexLock lock(&mu_);
  auto it = windows_.find(window.window_id());
  if (it == windows_.end()) {
    if (static_cast<int>(windows_.size()) >= options_.horizon &&
        window.window_id() < windows_.begin()->first) {
      return RejectLocked(RejectReason::kStaleWindow,
                          absl::StrCat(where, ": older than every window kept"));
    }
    Window fresh;
    fresh.expert_counts.assign(static_cast<size_t>(options_.num_layers) * options_.num_experts, 0);
    fresh.gpu_loads.assign(static_cast<size_t>(options_.num_layers) * num_gpus_, 0);
    fresh.reported.assign(num_gpus_, false);
    fresh.version = version;
    it = windows_.emplace(window.window_id(), std::move(fresh)).first;
  } else if (it->second.reported[gpu]) {
    return RejectLocked(RejectReason::kDuplicateWindow, absl::StrCat(where, ": already reported"));
  }
  Window& sum = it->second;
  const std::vector<std::vector<int>>& offsets = SlotOffsetsLocked(version, *layout);
  for (int l = 0; l < options_.num_layers; ++l) {
    const planner::LayerPlacement& placement = layout->layers[l];
    const int offset = offsets[l][gpu];
    int64_t gpu_total = 0;
    const auto& counts = window.layers(l).counts();
    for (int s = 0; s < counts.size(); ++s) {
      sum.expert_counts[static_cast<size_t>(l) * options_.num_experts +
                        placement.phy2log[offset + s]] += counts[s];
      gpu_total += counts[s];
    }
    sum.gpu_loads[static_cast<size_t>(l) * num_gpus_ + gpu] += gpu_total;
    assignments_ingested_ += gpu_total;
  }
  sum.reported[gpu] = true;
  ++sum.num_reported;
  sum.mixed_versions = sum.mixed_versions || sum.version != version;
  ++windows_ingested_;
  while (static_cast<int>(windows_.size()) > options_.horizon) windows_.erase(windows_.begin());
  return absl::OkStatus();
}

absl::Status LoadStore::CheckTiming(const craft::v1::GpuWindow& window, const std::string& where) {
  constexpr int64_t kMaxDurationMs = 24 * 3600 * 1000;
  const int64_t duration = window.duration_ms();
  if (duration <= 0 || duration > kMaxDurationMs ||
      window.window_id() > std::numeric_limits<int64_t>::max() / duration ||
      window.window_id() * duration != window.start_unix_ms()) {
    return Reject(RejectReason::kClockSkew,
                  absl::StrCat(where, ": starts at ", window.start_unix_ms(), " ms and lasts ",
                               duration, " ms, which is not window id x duration"));
  }
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->Now());
  const int64_t skew_ms = absl::ToInt64Milliseconds(options_.max_clock_skew);
  const int64_t start_ms = window.start_unix_ms();
  if (start_ms > now_ms + skew_ms || start_ms < now_ms - skew_ms) {
    return Reject(RejectReason::kClockSkew,
                  absl::StrCat(where, ": starts at unix ", start_ms, " ms, ",
                               (start_ms - now_ms) / 1000, " s from the planner's clock (at most ",
                               skew_ms / 1000, " s allowed; loads.max_clock_skew_s)"));
  }
  return absl::OkStatus();
}

const std::vector<std::vector<int>>& LoadStore::SlotOffsetsLocked(const std::string& version,
                                                                  const planner::Layout& layout) {
  auto it = slot_offsets_.find(version);
  if (it != slot_offsets_.end()) return it->second;
  constexpr size_t kVersionsKept = 4;  // windows straddle at most a commit or two
  if (slot_offsets_.size() >= kVersionsKept) slot_offsets_.erase(slot_offsets_.begin());
  std::vector<std::vector<int>> offsets;
  for (const planner::LayerPlacement& layer : layout.layers) {
    offsets.push_back(layer.SlotOffsets());
  }
  return slot_offsets_.emplace(version, std::move(offsets)).first->second;
}

planner::LoadTrace LoadStore::Trace() const {
  absl::MutexLock lock(&mu_);
  std::vector<const Window*> complete;
  for (const auto& [id, window] : windows_) {
    if (Complete(window)) complete.push_back(&window);
  }
  const int num_layers = options_.num_layers;
  const int num_experts = options_.num_experts;
  planner::LoadTrace trace(num_layers, num_experts, static_cast<int>(complete.size()));
  for (int w = 0; w < static_cast<int>(complete.size()); ++w) {
    for (int l = 0; l < num_layers; ++l) {
      const int64_t* source =
          complete[w]->expert_counts.data() + static_cast<size_t>(l) * num_experts;
      std::copy(source, source + num_experts, trace.mutable_window(w, l).begin());
    }
  }
  if (!options_.decay.has_value()) {
    trace.SetAggregateFromWindows();
    return trace;
  }
  const int num_windows = static_cast<int>(complete.size());
  for (int l = 0; l < num_layers; ++l) {
    std::vector<double> decayed(num_experts, 0.0);
    double weight = 1.0;
    for (int w = num_windows - 1; w >= 0; --w, weight *= *options_.decay) {
      absl::Span<const int64_t> counts = trace.window(w, l);
      for (int e = 0; e < num_experts; ++e) decayed[e] += weight * static_cast<double>(counts[e]);
    }
    absl::Span<int64_t> aggregate = trace.mutable_aggregate(l);
    for (int e = 0; e < num_experts; ++e) aggregate[e] = std::llround(decayed[e]);
  }
  return trace;
}

std::optional<MeasuredBalance> LoadStore::Measured(absl::string_view version) const {
  const std::string canonical = VersionOrInitial(version);
  absl::MutexLock lock(&mu_);
  MeasuredBalance result;
  result.per_layer.assign(options_.num_layers, 0.0);
  std::vector<double> loads(num_gpus_);
  for (const auto& [id, window] : windows_) {
    if (!Complete(window) || window.mixed_versions || window.version != canonical) continue;
    ++result.windows;
    for (int l = 0; l < options_.num_layers; ++l) {
      const int64_t* row = window.gpu_loads.data() + static_cast<size_t>(l) * num_gpus_;
      for (int g = 0; g < num_gpus_; ++g) loads[g] = static_cast<double>(row[g]);
      result.per_layer[l] += planner::Balancedness(loads);
    }
  }
  if (result.windows == 0) return std::nullopt;
  double total = 0;
  for (double& layer : result.per_layer) {
    layer /= result.windows;
    total += layer;
  }
  result.mean = total / options_.num_layers;
  return result;
}

int64_t LoadStore::windows_ingested() const {
  absl::MutexLock lock(&mu_);
  return windows_ingested_;
}

int64_t LoadStore::assignments_ingested() const {
  absl::MutexLock lock(&mu_);
  return assignments_ingested_;
}

int64_t LoadStore::rejected(RejectReason reason) const {
  absl::MutexLock lock(&mu_);
  return rejected_[static_cast<int>(reason)];
}

int64_t LoadStore::rejected_total() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (int64_t count : rejected_) total += count;
  return total;
}

planner::LoadTrace PooledTrace(const LoadStore& own, const std::vector<const LoadStore*>& peers) {
  planner::LoadTrace first = own.Trace();
  if (peers.empty()) return first;
  std::vector<planner::LoadTrace> traces;
  traces.push_back(std::move(first));
  int num_windows = traces.front().num_windows();
  for (const LoadStore* peer : peers) {
    traces.push_back(peer->Trace());
    num_windows += traces.back().num_windows();
  }
  const int num_layers = traces.front().num_layers();
  const int num_experts = traces.front().num_experts();
  planner::LoadTrace pooled(num_layers, num_experts, num_windows);
  int next = 0;
  for (const planner::LoadTrace& trace : traces) {
    for (int w = 0; w < trace.num_windows(); ++w, ++next) {
      for (int l = 0; l < num_layers; ++l) {
        absl::Span<const int64_t> counts = trace.window(w, l);
        std::copy(counts.begin(), counts.end(), pooled.mutable_window(next, l).begin());
      }
    }
    for (int l = 0; l < num_layers; ++l) {
      absl::Span<const int64_t> counts = trace.aggregate(l);
      absl::Span<int64_t> sum = pooled.mutable_aggregate(l);
      for (int e = 0; e < num_experts; ++e) {
        sum[e] = counts[e] > std::numeric_limits<int64_t>::max() - sum[e]
                     ? std::numeric_limits<int64_t>::max()
                     : sum[e] + counts[e];
      }
    }
  }
  return pooled;
}

}  // namespace craft::server
