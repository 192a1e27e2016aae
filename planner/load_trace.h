// Expert load counts: how many routed tokens each logical expert received.
#ifndef CRAFT_PLANNER_LOAD_TRACE_H_
#define CRAFT_PLANNER_LOAD_TRACE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace craft::planner {

// An L x E aggregate of token counts plus, optionally, B per-window samples of
// the same shape (a window is a time slice or a group of forward passes).
//
// The aggregate is what placement is computed from; the windows are what a
// placement is replayed against to measure balancedness. A trace without
// windows replays its aggregate as a single window.
//
// Counts are integers (tokens x top-k assignments). Values are plain data and
// not validated on write; call Validate() on anything read from outside.
//
// Thread-safety: const methods may be called concurrently; mutation is not
// synchronised.
class LoadTrace {
 public:
  LoadTrace() = default;
  // An all-zero trace with `num_windows` samples.
  LoadTrace(int num_layers, int num_experts, int num_windows = 0);

  int num_layers() const { return num_layers_; }
  int num_experts() const { return num_experts_; }
  int num_windows() const { return num_windows_; }

  absl::Span<const int64_t> aggregate(int layer) const;
  absl::Span<int64_t> mutable_aggregate(int layer);
  absl::Span<const int64_t> window(int window, int layer) const;
  absl::Span<int64_t> mutable_window(int window, int layer);

  // Windows used for replay: the samples, or the aggregate when there are none.
  int num_replay_windows() const { return num_windows_ > 0 ? num_windows_ : 1; }
  absl::Span<const int64_t> replay_window(int window, int layer) const;

  // Replaces the aggregate with the sum of the windows (no-op without windows).
  void SetAggregateFromWindows();

  // A trace holding windows [begin, end) of this one, with their sum as its
  // aggregate. Used to plan on one part of a trace and evaluate on another.
  LoadTrace SliceWindows(int begin, int end) const;

  // Total count of one layer's aggregate.
  int64_t LayerTotal(int layer) const;

  // Checks positive shape and that every count is non-negative.
  absl::Status Validate() const;
  // The same checks on the aggregate alone, for algorithms that read only it
  // (scanning 1000 windows would cost more than DeepSeek EPLB itself).
  absl::Status ValidateAggregate() const;

 private:
  int num_layers_ = 0;
  int num_experts_ = 0;
  int num_windows_ = 0;
  std::vector<int64_t> aggregate_;  // [layer][expert]
  std::vector<int64_t> windows_;    // [window][layer][expert]
};

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_LOAD_TRACE_H_
