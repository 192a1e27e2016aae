// PlacementService (proto/craft/v1/placement.proto) for operators and tools:
// GetLayout, WatchLayout (server stream: the current layout, then every
// commit; latest wins per watcher), ListAgents, Explain, Plan (dry run) and
// Replan (admin: "authorization: Bearer <token>" when a token is configured).
// Replan runs on the replan loop's thread, Plan (a dry run) on a pool of its
// own (limits.max_concurrent_plans threads, none queued: a busy pool answers
// RESOURCE_EXHAUSTED), so neither runs on a gRPC thread and a flood of dry
// runs never delays a Replan or the loop. A dry run's work is bounded
// (limits.max_plan_work, dry_run.h) and its deadline checked before it starts.
//
// Thread-safety: gRPC calls the handlers on its threads; PublishCommit and
// Drain are thread-safe. PublishCommit is the coordinator's commit hook and
// runs with the coordinator's mutex held: it takes only the watchers' mutex
// and the watchers' writers.
#ifndef CRAFT_SERVER_PLACEMENT_SERVICE_H_
#define CRAFT_SERVER_PLACEMENT_SERVICE_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/placement.grpc.pb.h"
#include "server/apply_coordinator.h"
#include "server/authorizer.h"
#include "server/config.h"
#include "server/job_pool.h"
#include "server/leader_directory.h"
#include "server/placement_groups.h"

namespace craft::server {

class LayoutWatcher;

class PlacementServiceImpl final : public craft::v1::PlacementService::WithRawCallbackMethod_Plan<
                                       craft::v1::PlacementService::CallbackService> {
 public:
  // The pointers must outlive the grpc::Server. Every request names its
  // placement group ("" for the only one). `authorizer` grants the roles;
  // `config` gives the limits. High availability: `directory` names the
  // leader (this planner when it leads); a follower's groups have no
  // coordinator or loop: it serves GetLayout, WatchLayout and Plan from
  // what PublishCommit gave it (the committed state in etcd) and answers
  // ListAgents, Explain and Replan with NotLeader.
  PlacementServiceImpl(const PlannerConfig& config, const Authorizer* authorizer,
                       const PlacementGroups* groups, const LeaderDirectory* directory = nullptr);

  grpc::ServerUnaryReactor* GetLayout(grpc::CallbackServerContext* context,
                                      const craft::v1::GetLayoutRequest* request,
                                      craft::v1::LayoutStatus* response) override;
  grpc::ServerWriteReactor<craft::v1::LayoutStatus>* WatchLayout(
      grpc::CallbackServerContext* context, const craft::v1::WatchLayoutRequest* request) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const craft::v1::ListAgentsRequest* request,
                                       craft::v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const craft::v1::ExplainRequest* request,
                                    craft::v1::ExplainResponse* response) override;
  // Raw: the request is parsed on a dry-run thread, after a slot was free, so
  // a flood of requests refused for want of a slot costs no parsing on the
  // server's threads.
  grpc::ServerUnaryReactor* Plan(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Replan(grpc::CallbackServerContext* context,
                                   const craft::v1::ReplanRequest* request,
                                   craft::v1::ReplanResponse* response) override;

  // Sends `group`'s new committed layout to its watchers (the commit hook).
  void PublishCommit(const std::string& group, const CommittedLayout& committed, int64_t epoch);
  // Ends every watch with UNAVAILABLE "planner draining" and refuses new ones.
  void Drain();

 private:
  friend class LayoutWatcher;
  // One group as watchers see it.
  struct GroupView {
    std::set<LayoutWatcher*> watchers;
    // What a new watcher gets first: the last published commit.
    craft::v1::LayoutStatus current;
  };

  craft::v1::LayoutStatus BuildStatus(const GroupStack& group, const CommittedLayout& committed,
                                      const std::string& pending_version, int64_t epoch) const;
  // `status` with the leader this planner knows.
  craft::v1::LayoutStatus WithLeader(craft::v1::LayoutStatus status) const;
  // False while draining.
  bool AddWatcher(LayoutWatcher* watcher, const std::string& group,
                  const std::string& known_version);
  void RemoveWatcher(LayoutWatcher* watcher, const std::string& group);

  const PlannerConfig config_;
  const Authorizer* const authorizer_;
  const PlacementGroups* const groups_;
  const LeaderDirectory* const directory_;

  JobPool dry_runs_;  // after config_: its jobs read it, so it stops first

  absl::Mutex watchers_mu_;
  std::map<std::string, GroupView> views_ ABSL_GUARDED_BY(watchers_mu_);  // by group
  bool draining_ ABSL_GUARDED_BY(watchers_mu_) = false;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLACEMENT_SERVICE_H_
