// Events of the planner service for whoever watches it (the metrics), free of
// gRPC and Prometheus. PlannerServer calls an observer given in its options.
// Every event names the placement group it happened in (server/config.h,
// PlacementGroup::name; kDefaultGroup without groups).
//
// Thread-safety: implementations must be thread-safe and must not block or
// call into the planner: OnApplyFinished runs with the group's
// ApplyCoordinator's mutex held, OnReplan on the group's replan loop thread.
#ifndef CRAFT_SERVER_PLANNER_OBSERVER_H_
#define CRAFT_SERVER_PLANNER_OBSERVER_H_

#include <string>

#include "server/apply_coordinator.h"
#include "server/replan_loop.h"

namespace craft::server {

class PlannerObserver {
 public:
  virtual ~PlannerObserver() = default;
  // After every replan (periodic, triggered or an RPC's) of `group`.
  virtual void OnReplan(const std::string& group, const ReplanOutcome& outcome) = 0;
  // When an apply of `group` reaches the commit point or is aborted.
  virtual void OnApplyFinished(const std::string& group, const ApplyRecord& record) = 0;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLANNER_OBSERVER_H_
