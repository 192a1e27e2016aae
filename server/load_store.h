// The planner's store of load windows (docs/design.md §3, step 1).
//
// Workers count tokens per physical slot of the layout version they serve;
// the store maps each GpuWindow's counts to logical experts with that
// version's layout (from a LayoutHistory), sums the GPUs of one window id into
// an L x E sample, and keeps the most recent `horizon` window ids. Windows
// every GPU has reported ("complete") make the planning trace and the measured
// balancedness; incomplete ones wait for their missing GPUs.
//
//   LoadStore store(options, &history);
//   absl::Status s = store.Ingest(window, node_gpus);  // rejected: counted, store unchanged
//   planner::LoadTrace trace = store.Trace();
//
// Input is untrusted: a malformed window is rejected whole with
// INVALID_ARGUMENT and counted under its reason; nothing else changes.
//
// Thread-safety: all methods are thread-safe (one internal mutex). Ingest is
// O(slots of one GPU) and never blocks on anything but that mutex, so it may
// run on gRPC reaction threads.
#ifndef CRAFT_SERVER_LOAD_STORE_H_
#define CRAFT_SERVER_LOAD_STORE_H_

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "craft/v1/load.pb.h"
#include "planner/cluster.h"
#include "planner/load_trace.h"
#include "server/layout_history.h"

namespace craft::server {

// Why a GpuWindow was rejected (the `reason` label of
// craft_planner_load_windows_rejected_total).
enum class RejectReason {
  kGpuOutOfRange,    // gpu not in [0, D)
  kGpuNotOnNode,     // the reporting agent does not own that GPU
  kUnknownVersion,   // layout_version not in the history
  kWrongLayerCount,  // layers != L
  kWrongSlotCount,   // a layer's counts != that GPU's slots under the version
  kNegativeCount,
  kCountTooLarge,    // a count above 2^40
  kBadWindowId,      // negative window_id
  kStaleWindow,      // older than every window kept, with the store full
  kDuplicateWindow,  // this GPU already reported this window id
  kClockSkew,        // starts too far from the planner's clock, or its id and start disagree
};
inline constexpr int kNumRejectReasons = 11;
absl::string_view RejectReasonName(RejectReason reason);

// Largest count a slot may report in one window.
inline constexpr int64_t kMaxSlotCount = int64_t{1} << 40;

struct LoadStoreOptions {
  int num_layers = 0;
  int num_experts = 0;
  planner::ClusterShape cluster;
  int horizon = 64;             // window ids kept, >= 1
  std::optional<double> decay;  // in (0, 1]; unset: plain sum
  // With a clock and a positive skew, a window must start (start_unix_ms)
  // within `max_clock_skew` of the clock's now, and its id must be
  // start_unix_ms / duration_ms: one node with a far-future clock can then
  // neither fill the store with windows nobody else reports nor make every
  // real window look stale. Without, ids are taken as they come (tests,
  // recorded traces).
  Clock* clock = nullptr;
  absl::Duration max_clock_skew = absl::ZeroDuration();
};

// Measured balance of one layout: from complete windows that every GPU
// recorded under that layout, per layer the mean over windows of
// mean / max GPU load.
struct MeasuredBalance {
  std::vector<double> per_layer;
  double mean = 1.0;  // over layers
  int windows = 0;
};

class LoadStore {
 public:
  // `layouts` must outlive the store.
  LoadStore(const LoadStoreOptions& options, const LayoutHistory* layouts);

  // Adds one GPU's window. `node_gpus` are the ranks of the reporting node;
  // empty skips that check.
  absl::Status Ingest(const craft::v1::GpuWindow& window, absl::Span<const int> node_gpus = {});

  // The complete windows, oldest first, as replay samples; the aggregate is
  // their sum, each window weighted decay^age (age 0 = newest) when decay is
  // set. No complete window: a trace with num_windows() == 0.
  planner::LoadTrace Trace() const;

  // Nullopt when no complete window was recorded wholly under `version`.
  std::optional<MeasuredBalance> Measured(absl::string_view version) const;

  int64_t windows_ingested() const;
  // Token-to-expert assignments in the ingested windows (sum of all counts;
  // a token counts top_k times per layer).
  int64_t assignments_ingested() const;
  int64_t rejected(RejectReason reason) const;
  int64_t rejected_total() const;

 private:
  // One window id, summed over the GPUs that reported it so far.
  struct Window {
    std::vector<int64_t> expert_counts;  // [layer][expert]
    std::vector<int64_t> gpu_loads;      // [layer][gpu]: tokens each GPU received
    std::vector<bool> reported;          // per GPU
    int num_reported = 0;
    std::string version;          // the version of the first report
    bool mixed_versions = false;  // some GPU reported under another version
  };

  // Counts a rejection and returns its INVALID_ARGUMENT status.
  absl::Status Reject(RejectReason reason, absl::string_view message) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status RejectLocked(RejectReason reason, absl::string_view message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Complete(const Window& window) const { return window.num_reported == num_gpus_; }
  // The clock checks of LoadStoreOptions::max_clock_skew (a kClockSkew
  // rejection when they fail).
  absl::Status CheckTiming(const craft::v1::GpuWindow& window, const std::string& where)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Index of `gpu`'s first slot in each layer of `layout`, computed once per
  // version: summing slots_per_gpu per window made ingest O(layers x GPUs)
  // per GPU window, quadratic in the cluster size.
  const std::vector<std::vector<int>>& SlotOffsetsLocked(const std::string& version,
                                                         const planner::Layout& layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LoadStoreOptions options_;
  const int num_gpus_;
  const LayoutHistory* const layouts_;

  mutable absl::Mutex mu_;
  std::map<int64_t, Window> windows_ ABSL_GUARDED_BY(mu_);  // by window id
  // [layer][gpu] slot offsets of the few most recent versions.
  std::map<std::string, std::vector<std::vector<int>>> slot_offsets_ ABSL_GUARDED_BY(mu_);
  int64_t windows_ingested_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t assignments_ingested_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<int64_t, kNumRejectReasons> rejected_ ABSL_GUARDED_BY(mu_) = {};
};

// The windows a group of a statistics family plans on (config.h,
// PlacementGroup): its own, followed by its peers' (each a sample of one
// instance's routing), with the sum of their aggregates, saturating so that
// pooled counts never wrap. Every store must have the same layers and experts.
planner::LoadTrace PooledTrace(const LoadStore& own, const std::vector<const LoadStore*>& peers);

}  // namespace craft::server

#endif  // CRAFT_SERVER_LOAD_STORE_H_
