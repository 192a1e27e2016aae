#include "agent/agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/atomic_file.h"
#include "agent/socket_file.h"
#include "common/logging.h"

namespace craft::agent {

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(AgentOptions options, Clock* clock) {
  if (options.planner_target.empty()) {
    return absl::InvalidArgumentError("the planner address is empty");
  }
  if (absl::Status s = options.backoff.Validate(); !s.ok()) return s;
  if (absl::Status s = PrepareSocketPath(options.socket_path); !s.ok()) return s;

  std::unique_ptr<Agent> agent(new Agent(std::move(options), clock));
  const AgentOptions& o = agent->options_;
  if (o.state_file.empty()) {
    agent->store_ = std::make_unique<MemoryStateStore>();
  } else {
    agent->store_ = std::make_unique<FileStateStore>(o.state_file);
  }
  agent->link_ = std::make_unique<PlannerLink>(
      PlannerLink::Options{o.planner_target, o.backoff, o.seed}, clock);
  absl::StatusOr<std::unique_ptr<NodeState>> node =
      NodeState::Create(o.node, clock, agent->store_.get(), agent->link_.get());
  if (!node.ok()) return node.status();
  agent->node_ = *std::move(node);
  agent->service_ = std::make_unique<WorkerService>(agent->node_.get());

  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + o.socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(agent->service_.get());
  agent->server_ = builder.BuildAndStart();
  if (agent->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", o.socket_path));
  }
  CRAFT_LOG(INFO) << "agent " << o.node.node << " listening on unix:" << o.socket_path << "; epoch "
                  << agent->node_->highest_epoch() << ", committed '"
                  << agent->node_->committed_version() << "'";
  if (!o.ready_file.empty()) {
    if (absl::Status s = WriteFileAtomically(o.ready_file, "socket=" + o.socket_path + "\n");
        !s.ok()) {
      return s;  // ~Agent shuts the server down again
    }
  }
  return agent;
}

Agent::~Agent() { Shutdown(); }

bool Agent::WaitForWorkers(absl::Time deadline, absl::Notification* cancel) {
  while (!node_->AllWorkersAttached()) {
    const absl::Time now = clock_->Now();
    if (now >= deadline || cancel->HasBeenNotified()) return false;
    cancel->WaitForNotificationWithTimeout(std::min(deadline - now, absl::Milliseconds(20)));
  }
  return true;
}

void Agent::ConnectPlanner() { link_->Start(node_.get()); }

void Agent::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (link_ != nullptr) link_->Stop();
  if (server_ != nullptr) {
    service_->Drain();
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.shutdown_deadline));
    if (!service_->WaitUntilIdle(options_.shutdown_deadline)) {
      CRAFT_LOG(WARNING) << service_->open_streams() << " worker streams still open at exit";
    }
    RemoveSocketFile(options_.socket_path);
    CRAFT_LOG(INFO) << "agent stopped";
  }
}

}  // namespace craft::agent
