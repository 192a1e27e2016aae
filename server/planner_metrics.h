// craft-planner's Prometheus metrics (metric names in README.md,
// "Dashboards"), one registry for every placement group the planner serves.
// Scrape-time values (agents, layouts, measured balance, counters mirrored
// from CoordinatorStats and the LoadStore) are read from each group's watched
// components at every scrape; histograms and the last apply's balancedness
// come from PlannerObserver events.
//
//   auto metrics = std::make_shared<PlannerMetrics>(EffectiveGroups(config));
//   ServerOptions options;
//   options.observer = metrics.get();
//   ... start the planner; for every group:
//   metrics->Watch(group.name, coordinator, load_store);
//   metrics_server->Register(metrics);
//   ...
//   metrics->Watch(group.name, nullptr, nullptr);  // before its components go
//
// Labels: every series of a group carries group=<its name> ("default"
// without groups); craft_planner_epoch and craft_planner_leader are the
// planner's own and carry none. Otherwise layer (0 .. L-1), gpu (0 .. D-1),
// node (configured nodes, one counter) and enumerated reasons and stages only.
//
// Thread-safety: thread-safe.
#ifndef CRAFT_SERVER_PLANNER_METRICS_H_
#define CRAFT_SERVER_PLANNER_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "server/apply_coordinator.h"
#include "server/config.h"
#include "server/load_store.h"
#include "server/planner_observer.h"
#include "server/replan_loop.h"

namespace craft::server {

class PlannerMetrics final : public metrics::ScrapedRegistry, public PlannerObserver {
 public:
  // One set of series per group, each of the group's shape.
  explicit PlannerMetrics(const std::vector<PlacementGroup>& groups);
  ~PlannerMetrics() override;

  // Where `group`'s scrape-time values come from; nulls detach (waiting for a
  // scrape in progress). The components must stay valid until detached. A
  // group that was not configured is ignored.
  void Watch(const std::string& group, const ApplyCoordinator* coordinator,
             const LoadStore* load_store);

  // PlannerObserver; events of a group that was not configured are ignored.
  void OnReplan(const std::string& group, const ReplanOutcome& outcome) override;
  void OnApplyFinished(const std::string& group, const ApplyRecord& record) override;

 private:
  class GroupSeries;

  // Null for a group that was not configured.
  GroupSeries* Find(const std::string& group) const;
  void Refresh() const override;

  // By group name. Fixed after construction, so events look groups up
  // without a lock.
  std::map<std::string, std::unique_ptr<GroupSeries>> groups_;
  // Planner-wide.
  prometheus::Gauge* epoch_;
  prometheus::Gauge* leader_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLANNER_METRICS_H_
