#include "agent/node_state.h"

#include <algorithm>
#include <utility>

namespace craft::agent {

absl::Status NodeState::Options::Validate() const {
  if (absl::Status s = ApplyRelay::Options::Validate(); !s.ok()) return s;
  if (gpus.empty()) return absl::InvalidArgumentError("the node has no GPUs");
  std::vector<int> sorted = gpus;
  std::sort(sorted.begin(), sorted.end());
  if (sorted.front() < 0) return absl::InvalidArgumentError("GPU ranks must be non-negative");
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError("GPU ranks must be unique");
  }
  return LoadForwarder::Options::Validate();
}

absl::StatusOr<std::unique_ptr<NodeState>> NodeState::Create(Options options, Clock* clock,
                                                             StateStore* store,
                                                             PlannerChannel* planner) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::sort(options.gpus.begin(), options.gpus.end());
  auto workers = std::make_unique<WorkerRegistry>(options.gpus);
  absl::StatusOr<std::unique_ptr<ApplyRelay>> relay =
      ApplyRelay::Create(options, clock, store, planner, workers.get());
  if (!relay.ok()) return relay.status();
  return std::unique_ptr<NodeState>(
      new NodeState(options, clock, planner, std::move(workers), *std::move(relay)));
}

NodeState::NodeState(const Options& options, Clock* clock, PlannerChannel* planner,
                     std::unique_ptr<WorkerRegistry> workers, std::unique_ptr<ApplyRelay> relay)
    : workers_(std::move(workers)),
      relay_(std::move(relay)),
      loads_(options, clock, workers_.get(), planner) {}

// ---------------------------------------------------------------- workers

absl::Status NodeState::AttachWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  absl::MutexLock lock(&mu_);
  return relay_->AttachWorker(hello, channel);
}

absl::Status NodeState::UpdateWorker(const craft::v1::WorkerHello& hello, WorkerChannel* channel) {
  absl::MutexLock lock(&mu_);
  return relay_->UpdateWorker(hello, channel);
}

void NodeState::DetachWorker(int gpu, WorkerChannel* channel) {
  absl::MutexLock lock(&mu_);
  relay_->DetachWorker(gpu, channel);
}

absl::Status NodeState::OnWorkerWindow(int gpu, const craft::v1::GpuWindow& window) {
  absl::MutexLock lock(&mu_);
  return loads_.OnWindow(gpu, window);
}

void NodeState::OnWorkerStatus(int gpu, const craft::v1::WorkerStatus& status) {
  absl::MutexLock lock(&mu_);
  relay_->OnWorkerStatus(gpu, status);
}

bool NodeState::AllWorkersAttached() const {
  absl::MutexLock lock(&mu_);
  return workers_->AllAttached();
}

// ---------------------------------------------------------------- planner

craft::v1::AgentHello NodeState::MakeHello() const {
  absl::MutexLock lock(&mu_);
  return relay_->MakeHello();
}

void NodeState::OnPlannerConnected() {
  absl::MutexLock lock(&mu_);
  relay_->OnPlannerConnected();  // a re-announce, if one is due, goes first
  loads_.OnPlannerConnected();
}

void NodeState::OnPlannerDisconnected() {
  absl::MutexLock lock(&mu_);
  relay_->OnPlannerDisconnected();
  loads_.OnPlannerDisconnected();
}

void NodeState::OnPlannerMessage(const craft::v1::PlannerMessage& message) {
  absl::MutexLock lock(&mu_);
  relay_->OnPlannerMessage(message);
}

// ---------------------------------------------------------------- time

void NodeState::Poll() {
  absl::MutexLock lock(&mu_);
  relay_->Poll();
  loads_.Poll();
}

// ---------------------------------------------------------------- observers

std::string NodeState::committed_version() const {
  absl::MutexLock lock(&mu_);
  return relay_->committed_version();
}

int64_t NodeState::highest_epoch() const {
  absl::MutexLock lock(&mu_);
  return relay_->highest_epoch();
}

bool NodeState::apply_pending() const {
  absl::MutexLock lock(&mu_);
  return relay_->apply_pending();
}

std::optional<craft::v1::ModelShape> NodeState::model() const {
  absl::MutexLock lock(&mu_);
  return relay_->model();
}

NodeState::Stats NodeState::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  static_cast<ApplyRelay::Stats&>(stats) = relay_->stats();
  static_cast<LoadForwarder::Stats&>(stats) = loads_.stats();
  stats.planner_connected = relay_->planner_connected();
  stats.attached_gpus = workers_->AttachedGpus();
  return stats;
}

}  // namespace craft::agent
