// Groups the windows of one window id from the node's GPUs into one NodeLoad.
//
// Workers count tokens per window and report one GpuWindow per window id. The
// planner needs per-GPU loads (its replay maps each GPU's slot counts through
// the layout version they were recorded under), so the agent does not sum
// windows: it batches them, one NodeLoad per window id, and keeps every
// GpuWindow whole with its own layout_version. A batch is flushed as soon as
// every attached GPU reported that id, or `flush_delay` after its first
// window arrived (a slow or detached worker cannot hold the others back).
//
// Not thread-safe: LoadForwarder owns it; NodeState's lock guards it.
#ifndef CRAFT_AGENT_WINDOW_BATCHER_H_
#define CRAFT_AGENT_WINDOW_BATCHER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "craft/v1/load.pb.h"

namespace craft::agent {

// Content checks the agent can make without knowing the layout: `num_layers`
// layers (when > 0), non-negative counts, a layout_version of sane length.
// INVALID_ARGUMENT with the reason otherwise.
absl::Status ValidateWindowContent(const craft::v1::GpuWindow& window, int num_layers);

class WindowBatcher {
 public:
  // At most `max_open` batches wait; beyond that the oldest is flushed early.
  explicit WindowBatcher(absl::Duration flush_delay, size_t max_open = 64);

  // Adds `window` (arrived at `now`); returns the NodeLoads ready now: its
  // batch when every GPU in `attached` has reported, and any batch evicted by
  // the `max_open` bound.
  std::vector<craft::v1::NodeLoad> Add(craft::v1::GpuWindow window, absl::Time now,
                                       const std::vector<int>& attached);
  // The batches whose first window arrived at or before now - flush_delay,
  // oldest first.
  std::vector<craft::v1::NodeLoad> TakeDue(absl::Time now);

  size_t open_batches() const { return open_.size(); }

 private:
  struct Batch {
    absl::Time first_arrival;
    std::set<int> gpus;
    craft::v1::NodeLoad load;
  };

  const absl::Duration flush_delay_;
  const size_t max_open_;
  std::map<int64_t, Batch> open_;  // by window id
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_WINDOW_BATCHER_H_
