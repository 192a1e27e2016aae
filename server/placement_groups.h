// The placement groups one planner serves (deploy/planner.yaml, "groups"):
// each an independent expert-parallel group with its own cluster, committed
// layout, load store, replan loop and two-phase apply, so that a failure in
// one never blocks another. Agents and requests name their group; "" means
// the only one.
//
//   PlacementGroups groups(std::move(stacks));
//   CRAFT_ASSIGN_OR_RETURN(GroupStack * group, groups.Find(request.group()));
//   group->coordinator->StartApply(...);
//
// Thread-safety: the set of groups is fixed at construction; Find and all()
// are thread-safe, and every component of a stack is itself thread-safe.
#ifndef CRAFT_SERVER_PLACEMENT_GROUPS_H_
#define CRAFT_SERVER_PLACEMENT_GROUPS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/apply_coordinator.h"
#include "server/authorizer.h"
#include "server/config.h"
#include "server/layout_history.h"
#include "server/load_store.h"
#include "server/replan_loop.h"
#include "server/state_store.h"

namespace craft::server {

// One group's components. A follower (high availability) builds only the
// authorizer, history and load store; coordinator and loop stay null.
struct GroupStack {
  PlacementGroup group;  // name, statistics family, configuration
  // Who may connect as which of the group's nodes (its `nodes` and cluster).
  std::unique_ptr<Authorizer> agents;
  std::unique_ptr<StateStore> owned_state_store;  // unless one was injected
  std::unique_ptr<LayoutHistory> history;
  std::unique_ptr<LoadStore> load_store;
  std::unique_ptr<ApplyCoordinator> coordinator;
  std::unique_ptr<ReplanLoop> loop;

  const std::string& name() const { return group.name; }
  const PlannerConfig& config() const { return group.config; }
};

class PlacementGroups {
 public:
  explicit PlacementGroups(std::vector<std::unique_ptr<GroupStack>> groups);

  // The group called `name`; "" is the only group. INVALID_ARGUMENT for ""
  // when there are several (the message lists them), NOT_FOUND for a name
  // not configured.
  absl::StatusOr<GroupStack*> Find(absl::string_view name) const;
  const std::vector<std::unique_ptr<GroupStack>>& all() const { return groups_; }

  // The members of `group`'s statistics family other than itself (none
  // without a family).
  std::vector<const GroupStack*> FamilyPeers(const GroupStack& group) const;

 private:
  const std::vector<std::unique_ptr<GroupStack>> groups_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLACEMENT_GROUPS_H_
