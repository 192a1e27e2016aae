#include "server/placement_groups.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace craft::server {

PlacementGroups::PlacementGroups(std::vector<std::unique_ptr<GroupStack>> groups)
    : groups_(std::move(groups)) {}

absl::StatusOr<GroupStack*> PlacementGroups::Find(absl::string_view name) const {
  if (name.empty()) {
    if (groups_.size() == 1) return groups_.front().get();
    return absl::InvalidArgumentError(
        absl::StrCat("this planner serves ", groups_.size(), " placement groups; name one (",
                     absl::StrJoin(groups_, ", ",
                                   [](std::string* out, const std::unique_ptr<GroupStack>& group) {
                                     absl::StrAppend(out, group->name());
                                   }),
                     ")"));
  }
  for (const std::unique_ptr<GroupStack>& group : groups_) {
    if (group->name() == name) return group.get();
  }
  // The name is the caller's: bounded before it is echoed.
  constexpr size_t kEchoed = 64;
  return absl::NotFoundError(absl::StrCat("no placement group '", name.substr(0, kEchoed),
                                          name.size() > kEchoed ? "..." : "", "' on this planner"));
}

std::vector<const GroupStack*> PlacementGroups::FamilyPeers(const GroupStack& group) const {
  std::vector<const GroupStack*> peers;
  if (group.group.stats_family.empty()) return peers;
  for (const std::unique_ptr<GroupStack>& other : groups_) {
    if (other.get() != &group && other->group.stats_family == group.group.stats_family) {
      peers.push_back(other.get());
    }
  }
  return peers;
}

}  // namespace craft::server
