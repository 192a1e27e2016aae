#include "agent/load_forwarder.h"

#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "wire/version.h"

namespace craft::agent {

absl::Status LoadForwarder::Options::Validate() const {
  if (window_flush_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the window flush delay must be non-negative");
  }
  return absl::OkStatus();
}

LoadForwarder::LoadForwarder(Options options, Clock* clock, WorkerRegistry* workers,
                             PlannerChannel* planner)
    : options_(options),
      clock_(clock),
      workers_(workers),
      planner_(planner),
      batcher_(options_.window_flush_delay) {}

absl::Status LoadForwarder::OnWindow(int gpu, const craft::v1::GpuWindow& window) {
  ++stats_.windows_received;
  if (window.gpu() != gpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("window for gpu ", window.gpu(), " on the stream of gpu ", gpu));
  }
  if (workers_->channel(gpu) == nullptr) return absl::OkStatus();  // detached meanwhile
  const std::optional<craft::v1::ModelShape> model = workers_->model();
  absl::Status status = ValidateWindowContent(window, model ? model->num_layers() : 0);
  if (!status.ok()) {
    ++stats_.windows_malformed;
  } else if (status = workers_->CheckWindowId(gpu, window); !status.ok()) {
    ++stats_.windows_out_of_order;
  }
  if (!status.ok()) {
    ++stats_.windows_rejected;
    CRAFT_LOG(WARNING) << "dropped window: " << status;
    return absl::OkStatus();
  }
  int64_t& assignments = stats_.gpu_assignments[gpu];
  for (const craft::v1::SlotCounts& layer : window.layers()) {
    for (int64_t count : layer.counts()) assignments += count;
  }
  craft::v1::GpuWindow copy = window;
  copy.set_layout_version(VersionOrInitial(window.layout_version()));
  Emit(batcher_.Add(std::move(copy), clock_->Now(), workers_->AttachedGpus()));
  return absl::OkStatus();
}

void LoadForwarder::OnPlannerConnected() {
  planner_connected_ = true;
  std::deque<craft::v1::NodeLoad> buffered = std::move(buffered_);
  buffered_.clear();
  Emit({std::make_move_iterator(buffered.begin()), std::make_move_iterator(buffered.end())});
}

void LoadForwarder::OnPlannerDisconnected() { planner_connected_ = false; }

void LoadForwarder::Poll() { Emit(batcher_.TakeDue(clock_->Now())); }

void LoadForwarder::Emit(std::vector<craft::v1::NodeLoad> loads) {
  for (craft::v1::NodeLoad& load : loads) {
    // The planner sizes applies by it and learns changes (after flips) here,
    // without a re-announce.
    for (const craft::v1::GpuInfo& info : workers_->GpuInfos()) {
      if (!info.has_staging_headroom_bytes() || workers_->channel(info.rank()) == nullptr) continue;
      craft::v1::StagingHeadroom* headroom = load.add_headroom();
      headroom->set_gpu(info.rank());
      headroom->set_bytes(info.staging_headroom_bytes());
    }
    if (planner_connected_) {
      craft::v1::AgentMessage message;
      *message.mutable_load() = std::move(load);
      ++stats_.loads_sent;
      planner_->Send(message);
      continue;
    }
    buffered_.push_back(std::move(load));
    while (buffered_.size() > options_.max_buffered_loads) {
      buffered_.pop_front();
      ++stats_.loads_dropped;
    }
  }
}

}  // namespace craft::agent
