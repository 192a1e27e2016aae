// The node's load windows on their way to the planner: every GpuWindow a
// worker reports is checked (the stream's GPU, increasing ids, the model's
// layer count, non-negative counts), batched per window id (WindowBatcher)
// and sent as one NodeLoad that also carries every attached GPU's staging
// headroom. While the planner is away the last `max_buffered_loads` wait and
// older ones are dropped and counted (static stability: loads never block a
// worker).
//
//   LoadForwarder loads(options, clock, &workers, &planner_link);
//   loads.OnWindow(gpu, window);  // a worker's stream
//   loads.OnPlannerConnected();   // after the hello: what waited goes out
//   loads.Poll();                 // every few ms: batches past their delay
//
// Not thread-safe: NodeState owns it and guards it with its lock, so the
// planner channel is called with that lock held (see channels.h).
#ifndef CRAFT_AGENT_LOAD_FORWARDER_H_
#define CRAFT_AGENT_LOAD_FORWARDER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/channels.h"
#include "agent/window_batcher.h"
#include "agent/worker_registry.h"
#include "common/clock.h"
#include "craft/v1/load.pb.h"

namespace craft::agent {

class LoadForwarder {
 public:
  struct Options {
    // A window id's NodeLoad leaves at most this long after its first window.
    absl::Duration window_flush_delay = absl::Milliseconds(200);
    size_t max_buffered_loads = 16;  // NodeLoads kept while the planner is away

    absl::Status Validate() const;
  };

  // Cumulative counts since construction (metrics).
  struct Stats {
    int64_t windows_received = 0;
    int64_t windows_rejected = 0;      // malformed or repeated: dropped
    int64_t windows_malformed = 0;     // of which: bad content
    int64_t windows_out_of_order = 0;  // of which: a window id not above the last
    // Per GPU of the node: token-to-expert assignments in accepted windows.
    std::map<int, int64_t> gpu_assignments;
    int64_t loads_sent = 0;
    int64_t loads_dropped = 0;  // oldest buffered loads dropped while disconnected
  };

  // `workers` says which GPUs are attached, their model and staging headroom,
  // and keeps each stream's last window id. The pointers must outlive this.
  LoadForwarder(Options options, Clock* clock, WorkerRegistry* workers, PlannerChannel* planner);

  // A window from the stream of `gpu`. Non-OK only when the stream must end
  // (a window for another GPU); windows with bad content are dropped and
  // counted, the stream stays.
  absl::Status OnWindow(int gpu, const craft::v1::GpuWindow& window);
  // The hello went out: buffered loads follow it.
  void OnPlannerConnected();
  void OnPlannerDisconnected();
  // Sends the batches whose flush delay has passed.
  void Poll();

  const Stats& stats() const { return stats_; }

 private:
  // Sends `loads` with the GPUs' headroom, or buffers them while the planner
  // is away.
  void Emit(std::vector<craft::v1::NodeLoad> loads);

  const Options options_;
  Clock* const clock_;
  WorkerRegistry* const workers_;
  PlannerChannel* const planner_;
  WindowBatcher batcher_;
  bool planner_connected_ = false;
  std::deque<craft::v1::NodeLoad> buffered_;
  Stats stats_;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_LOAD_FORWARDER_H_
