#include "server/placement_service.h"

#include <functional>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/grpc/status.h"
#include "common/grpc/stream_writer.h"
#include "server/dry_run.h"
#include "server/replan_stages.h"
#include "wire/layout_proto.h"

namespace craft::server {

using craft::v1::LayoutStatus;

// One WatchLayout stream. Lives from WatchLayout until OnDone deletes it.
// Latest wins: a slow watcher skips to the newest status.
class LayoutWatcher final : public grpc::ServerWriteReactor<LayoutStatus> {
 public:
  // A watcher refused by `admission` (the authorizer's answer) ends at once.
  LayoutWatcher(PlacementServiceImpl* service, const std::string& group,
                const std::string& known_version, const grpc::Status& admission)
      : service_(service),
        group_(group),
        writer_(
            DropPolicy<LayoutStatus>::KeepLatest(),
            [this](const LayoutStatus* status) { StartWrite(status); },
            [this](const grpc::Status& status) { Finish(status); }) {
    writer_.Open();
    if (!admission.ok()) {
      Close(admission);
    } else if (!service_->AddWatcher(this, group_, known_version)) {
      Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner draining"));
    }
  }

  // Thread-safe; see StreamWriter.
  void Push(const LayoutStatus& status) { writer_.Push(status); }
  void Close(const grpc::Status& status) { writer_.Close(status); }

  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }
  void OnCancel() override { Close(grpc::Status::CANCELLED); }
  void OnDone() override {
    service_->RemoveWatcher(this, group_);
    delete this;
  }

 private:
  PlacementServiceImpl* const service_;
  const std::string group_;
  StreamWriter<LayoutStatus> writer_;
};

namespace {

// Finishes a unary call at once.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Runs `work` on the replan loop's thread and finishes the call with its
// status; UNAVAILABLE when the loop is busy or stopping.
grpc::ServerUnaryReactor* OnLoop(ReplanLoop* loop, grpc::CallbackServerContext* context,
                                 std::function<grpc::Status()> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool posted = loop->Post([reactor, work = std::move(work)](bool run) {
    reactor->Finish(run ? work()
                        : grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner shutting down"));
  });
  if (!posted) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "planner busy (too many queued requests) or shutting down"));
  }
  return reactor;
}

}  // namespace

PlacementServiceImpl::PlacementServiceImpl(const PlannerConfig& config,
                                           const Authorizer* authorizer,
                                           const PlacementGroups* groups,
                                           const LeaderDirectory* directory)
    : config_(config),
      authorizer_(authorizer),
      groups_(groups),
      directory_(directory),
      dry_runs_(config.max_concurrent_plans, /*max_queued=*/0, JobPool::Priority::kBackground) {
  for (const std::unique_ptr<GroupStack>& group : groups_->all()) {
    LayoutStatus status;
    // A follower's groups: PublishCommit tells them.
    if (group->coordinator != nullptr) {
      // Built before taking watchers_mu_: the lock order is coordinator, then
      // watchers (PublishCommit runs under the coordinator's lock).
      status =
          BuildStatus(*group, group->coordinator->committed(), "", group->coordinator->epoch());
    }
    absl::MutexLock lock(&watchers_mu_);
    views_[group->name()].current = std::move(status);
  }
}

LayoutStatus PlacementServiceImpl::BuildStatus(const GroupStack& group,
                                               const CommittedLayout& committed,
                                               const std::string& pending_version,
                                               int64_t epoch) const {
  LayoutStatus status;
  *status.mutable_committed() = LayoutToProto(*committed.layout, committed.version);
  status.set_pending_version(pending_version);
  status.set_epoch(epoch);
  // 0 until a complete window was recorded under the committed layout.
  if (std::optional<MeasuredBalance> measured = group.load_store->Measured(committed.version)) {
    status.set_measured_balancedness(measured->mean);
  }
  status.set_windows_ingested(group.load_store->windows_ingested());
  status.set_from_leader(group.coordinator != nullptr);
  status.set_group(group.name());
  return status;
}

LayoutStatus PlacementServiceImpl::WithLeader(LayoutStatus status) const {
  if (directory_ != nullptr) status.set_leader(directory_->Get());
  return status;
}

grpc::ServerUnaryReactor* PlacementServiceImpl::GetLayout(
    grpc::CallbackServerContext* context, const craft::v1::GetLayoutRequest* request,
    LayoutStatus* response) {
  if (absl::Status auth = authorizer_->Authorize(*context, Role::kRead, "GetLayout"); !auth.ok()) {
    return Done(context, ToGrpcStatus(auth));
  }
  absl::StatusOr<GroupStack*> group = groups_->Find(request->group());
  if (!group.ok()) return Done(context, ToGrpcStatus(group.status()));
  const ApplyCoordinator* coordinator = (*group)->coordinator.get();
  if (coordinator == nullptr) {
    absl::MutexLock lock(&watchers_mu_);
    const LayoutStatus& current = views_[(*group)->name()].current;
    if (!current.has_committed()) {
      return Done(context, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "this follower has not read the committed layout yet"));
    }
    *response = WithLeader(current);
    return Done(context, grpc::Status::OK);
  }
  *response = WithLeader(BuildStatus(**group, coordinator->committed(),
                                     coordinator->pending_version(), coordinator->epoch()));
  return Done(context, grpc::Status::OK);
}

grpc::ServerWriteReactor<LayoutStatus>* PlacementServiceImpl::WatchLayout(
    grpc::CallbackServerContext* context, const craft::v1::WatchLayoutRequest* request) {
  absl::Status admission = authorizer_->Authorize(*context, Role::kRead, "WatchLayout");
  std::string group;
  if (admission.ok()) {
    absl::StatusOr<GroupStack*> found = groups_->Find(request->group());
    if (found.ok()) {
      group = (*found)->name();
    } else {
      admission = found.status();
    }
  }
  return new LayoutWatcher(this, group, request->known_version(), ToGrpcStatus(admission));
}

bool PlacementServiceImpl::AddWatcher(LayoutWatcher* watcher, const std::string& group,
                                      const std::string& known_version) {
  absl::MutexLock lock(&watchers_mu_);
  if (draining_) return false;
  GroupView& view = views_[group];
  view.watchers.insert(watcher);
  if (view.current.has_committed() && view.current.committed().version() != known_version) {
    watcher->Push(WithLeader(view.current));
  }
  return true;
}

void PlacementServiceImpl::RemoveWatcher(LayoutWatcher* watcher, const std::string& group) {
  absl::MutexLock lock(&watchers_mu_);
  // A watcher refused at admission never joined a group's view.
  if (auto it = views_.find(group); it != views_.end()) it->second.watchers.erase(watcher);
}

void PlacementServiceImpl::PublishCommit(const std::string& group, const CommittedLayout& committed,
                                         int64_t epoch) {
  absl::StatusOr<GroupStack*> stack = groups_->Find(group);
  if (!stack.ok()) return;  // the planner's own groups only
  LayoutStatus status = BuildStatus(**stack, committed, "", epoch);
  absl::MutexLock lock(&watchers_mu_);
  GroupView& view = views_[group];
  view.current = std::move(status);
  const LayoutStatus pushed = WithLeader(view.current);
  for (LayoutWatcher* watcher : view.watchers) watcher->Push(pushed);
}

void PlacementServiceImpl::Drain() {
  absl::MutexLock lock(&watchers_mu_);
  draining_ = true;
  for (auto& [name, view] : views_) {
    for (LayoutWatcher* watcher : view.watchers) {
      watcher->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner draining"));
    }
  }
}

grpc::ServerUnaryReactor* PlacementServiceImpl::ListAgents(
    grpc::CallbackServerContext* context, const craft::v1::ListAgentsRequest* request,
    craft::v1::ListAgentsResponse* response) {
  if (absl::Status auth = authorizer_->Authorize(*context, Role::kRead, "ListAgents"); !auth.ok()) {
    return Done(context, ToGrpcStatus(auth));
  }
  absl::StatusOr<GroupStack*> group = groups_->Find(request->group());
  if (!group.ok()) return Done(context, ToGrpcStatus(group.status()));
  const ApplyCoordinator* coordinator = (*group)->coordinator.get();
  if (coordinator == nullptr) return Done(context, NotLeader(context, directory_->Get()));
  for (const AgentSnapshot& agent : coordinator->Agents()) {
    craft::v1::AgentInfo* info = response->add_agents();
    info->set_node(agent.node);
    info->mutable_gpus()->Add(agent.gpus.begin(), agent.gpus.end());
    info->set_committed_version(agent.serving_version);
    info->set_connected(agent.connected);
    info->set_last_seen_unix_ms(UnixMillis(agent.last_seen));
    info->set_has_transfer_group(agent.has_transfer_group);
    info->mutable_gpu_versions()->Add(agent.gpu_versions.begin(), agent.gpu_versions.end());
    info->set_windows_rejected(agent.windows_rejected);
  }
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* PlacementServiceImpl::Explain(grpc::CallbackServerContext* context,
                                                        const craft::v1::ExplainRequest* request,
                                                        craft::v1::ExplainResponse* response) {
  if (absl::Status auth = authorizer_->Authorize(*context, Role::kRead, "Explain"); !auth.ok()) {
    return Done(context, ToGrpcStatus(auth));
  }
  absl::StatusOr<GroupStack*> group = groups_->Find(request->group());
  if (!group.ok()) return Done(context, ToGrpcStatus(group.status()));
  if ((*group)->loop == nullptr) return Done(context, NotLeader(context, directory_->Get()));
  *response = (*group)->loop->LastExplain();
  response->set_group((*group)->name());
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* PlacementServiceImpl::Plan(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  if (absl::Status auth = authorizer_->Authorize(*context, Role::kRead, "Plan"); !auth.ok()) {
    return Done(context, ToGrpcStatus(auth));
  }
  // `request` and `response` stay valid until the call is finished.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = absl::FromChrono(context->deadline());
  const bool posted = dry_runs_.Post([this, reactor, request, response, deadline](bool run) {
    if (!run) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "planner shutting down"));
      return;
    }
    if (absl::Now() >= deadline) {
      reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                   "the deadline passed before the dry run started"));
      return;
    }
    craft::v1::PlanRequest parsed;
    grpc::ByteBuffer bytes(*request);  // shares the slices; Deserialize consumes its argument
    if (!grpc::SerializationTraits<craft::v1::PlanRequest>::Deserialize(&bytes, &parsed).ok()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the PlanRequest does not parse"));
      return;
    }
    absl::StatusOr<GroupStack*> group = groups_->Find(parsed.group());
    if (!group.ok()) {
      reactor->Finish(ToGrpcStatus(group.status()));
      return;
    }
    const PlannerConfig& config = (*group)->config();
    const int64_t max_work =
        config_.max_plan_work > 0 ? config_.max_plan_work : DefaultMaxPlanWork(config);
    absl::StatusOr<craft::v1::PlanResponse> plan = PlanDryRun(parsed, config, max_work);
    if (!plan.ok()) {
      reactor->Finish(ToGrpcStatus(plan.status()));
      return;
    }
    bool own_buffer = false;
    const grpc::Status serialized =
        grpc::SerializationTraits<craft::v1::PlanResponse>::Serialize(*plan, response, &own_buffer);
    reactor->Finish(serialized);
  });
  if (!posted) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("at most ", config_.max_concurrent_plans,
                     " dry-run plans at a time (limits.max_concurrent_plans); try again later")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* PlacementServiceImpl::Replan(grpc::CallbackServerContext* context,
                                                       const craft::v1::ReplanRequest* request,
                                                       craft::v1::ReplanResponse* response) {
  if (absl::Status auth = authorizer_->Authorize(*context, Role::kAdmin, "Replan"); !auth.ok()) {
    return Done(context, ToGrpcStatus(auth));
  }
  absl::StatusOr<GroupStack*> group = groups_->Find(request->group());
  if (!group.ok()) return Done(context, ToGrpcStatus(group.status()));
  ReplanLoop* loop = (*group)->loop.get();
  if (loop == nullptr) return Done(context, NotLeader(context, directory_->Get()));
  const bool force = request->force();
  return OnLoop(loop, context, [loop, force, response] {
    ReplanOutcome outcome = loop->RunOnce(force);
    response->set_decision(outcome.decision);
    response->set_version(outcome.version);
    for (const StageTime& stage : outcome.stage_times) {
      craft::v1::StageTime* out = response->add_stage_times();
      out->set_stage(std::string(ReplanStageName(stage.stage)));
      out->set_seconds(absl::ToDoubleSeconds(stage.duration));
    }
    return grpc::Status::OK;
  });
}

}  // namespace craft::server
