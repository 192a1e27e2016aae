#include "gpu_worker/window_reporter.h"

#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace craft::gpu_worker {

WindowReporter::WindowReporter(Options options, TrafficGenerator traffic, LoadCounter* counter,
                               Send send)
    : options_(options), traffic_(std::move(traffic)), counter_(counter), send_(std::move(send)) {}

void WindowReporter::Report(int64_t window_id, const LayoutState& state) {
  absl::StatusOr<std::vector<std::vector<int64_t>>> counts =
      traffic_.CountWindow(window_id, *state.routing, *state.local, counter_);
  if (!counts.ok()) {
    CRAFT_LOG(ERROR) << "window " << window_id << ": " << counts.status();
    return;
  }
  const int64_t window_ms = absl::ToInt64Milliseconds(options_.window);
  craft::v1::WorkerMessage message;
  craft::v1::GpuWindow* window = message.mutable_window();
  window->set_gpu(options_.gpu);
  window->set_layout_version(state.version);
  window->set_window_id(window_id);
  window->set_start_unix_ms(window_id * window_ms);
  window->set_duration_ms(window_ms);
  std::vector<int64_t> totals;
  int64_t assignments = 0;
  for (const std::vector<int64_t>& layer : *counts) {
    window->add_layers()->mutable_counts()->Add(layer.begin(), layer.end());
    int64_t total = 0;
    for (int64_t c : layer) total += c;
    totals.push_back(total);
    assignments += total;
  }
  {
    absl::MutexLock lock(&mu_);
    ++stats_.windows_reported;
    stats_.assignments += assignments;
  }
  if (options_.log_windows) {
    CRAFT_LOG(INFO) << "window " << window_id << " gpu " << options_.gpu << " version "
                    << state.version << " tokens per layer [" << absl::StrJoin(totals, ",") << "]";
  }
  send_(std::move(message));
}

void WindowReporter::Hold() {
  absl::MutexLock lock(&mu_);
  ++stats_.windows_held;
}

WindowReporter::Stats WindowReporter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace craft::gpu_worker
