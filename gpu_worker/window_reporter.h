// The worker's load windows: at the end of each window, the window's tokens
// routed with the layout that served it and counted on this GPU's slots
// (TrafficGenerator, the backend's LoadCounter), sent to the agent as one
// GpuWindow. Windows are aligned on wall time (window id = floor(unix_ms /
// window_ms)) so that every worker's window of one id covers the same
// interval; the Worker's window loop calls Report at each window's end.
//
//   WindowReporter windows(options, std::move(traffic), backend->counter(), send);
//   windows.Report(window_id, serving);  // the window was served
//   windows.Hold();                      // it was not (an agent resync runs)
//
// Thread-safety: Report and Hold from one thread (the window loop; the
// counter is not shared); stats() from any thread.
#ifndef CRAFT_GPU_WORKER_WINDOW_REPORTER_H_
#define CRAFT_GPU_WORKER_WINDOW_REPORTER_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "craft/v1/worker.pb.h"
#include "gpu_worker/backend.h"
#include "gpu_worker/layout_state.h"
#include "gpu_worker/traffic.h"

namespace craft::gpu_worker {

class WindowReporter {
 public:
  struct Options {
    int gpu = 0;
    absl::Duration window = absl::Seconds(1);
    bool log_windows = false;  // log every window's per-layer totals
  };

  // Cumulative counts since construction (metrics).
  struct Stats {
    int64_t windows_reported = 0;
    int64_t assignments = 0;   // token-to-expert assignments counted on this GPU's slots
    int64_t windows_held = 0;  // not served: on another version than the node's
  };

  // Sends one message to the agent (never blocks).
  using Send = std::function<void(craft::v1::WorkerMessage)>;

  // `counter` is not owned and must outlive this.
  WindowReporter(Options options, TrafficGenerator traffic, LoadCounter* counter, Send send);

  // Counts window `window_id`'s tokens with `state`, the layout that served
  // it, and sends the GpuWindow. A counter error is logged and the window
  // skipped.
  void Report(int64_t window_id, const LayoutState& state);
  // A window was not served (an agent resync holds it): it is counted as
  // held, and nothing is sent.
  void Hold();

  Stats stats() const;

 private:
  const Options options_;
  const TrafficGenerator traffic_;
  LoadCounter* const counter_;
  const Send send_;

  mutable absl::Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_WINDOW_REPORTER_H_
