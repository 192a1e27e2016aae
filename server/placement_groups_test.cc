#include "server/placement_groups.h"

#include <memory>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<GroupStack> Stack(const std::string& name, const std::string& family) {
  auto stack = std::make_unique<GroupStack>();
  stack->group.name = name;
  stack->group.stats_family = family;
  return stack;
}

PlacementGroups Groups(std::vector<std::pair<std::string, std::string>> names) {
  std::vector<std::unique_ptr<GroupStack>> stacks;
  for (const auto& [name, family] : names) stacks.push_back(Stack(name, family));
  return PlacementGroups(std::move(stacks));
}

TEST(PlacementGroupsTest, TheOnlyGroupAnswersToNoName) {
  PlacementGroups groups = Groups({{"default", ""}});
  absl::StatusOr<GroupStack*> found = groups.Find("");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->name(), "default");
  EXPECT_TRUE(groups.Find("default").ok());
}

TEST(PlacementGroupsTest, SeveralGroupsMustBeNamed) {
  PlacementGroups groups = Groups({{"prefill", ""}, {"decode", ""}});
  absl::StatusOr<GroupStack*> unnamed = groups.Find("");
  EXPECT_EQ(unnamed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unnamed.status().message(),
              HasSubstr("2 placement groups; name one (prefill, decode)"));
  EXPECT_EQ((*groups.Find("decode"))->name(), "decode");
}

TEST(PlacementGroupsTest, AnUnknownNameIsNotFoundAndEchoedBounded) {
  PlacementGroups groups = Groups({{"prefill", ""}});
  absl::StatusOr<GroupStack*> unknown = groups.Find(std::string(10'000, 'x'));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_LT(unknown.status().message().size(), 200u);
}

TEST(PlacementGroupsTest, FamilyPeersAreTheOtherMembersOfTheFamily) {
  PlacementGroups groups =
      Groups({{"p0", "prefill"}, {"p1", "prefill"}, {"d0", "decode"}, {"x", ""}});
  std::vector<std::string> peers;
  for (const GroupStack* peer : groups.FamilyPeers(**groups.Find("p0"))) {
    peers.push_back(peer->name());
  }
  EXPECT_THAT(peers, ElementsAre("p1"));
  EXPECT_TRUE(groups.FamilyPeers(**groups.Find("d0")).empty());
  EXPECT_TRUE(groups.FamilyPeers(**groups.Find("x")).empty());
}

TEST(PlacementGroupsTest, EachGroupHasItsOwnStateFile) {
  PlannerConfig config;
  EXPECT_EQ(GroupStateName(config, "/var/lib/craft/planner.state", "default"),
            "/var/lib/craft/planner.state");
  config.groups.push_back(PlacementGroup{"decode", "", PlannerConfig{}});
  EXPECT_EQ(GroupStateName(config, "/var/lib/craft/planner.state", "decode"),
            "/var/lib/craft/planner.state.decode");
}

}  // namespace
}  // namespace craft::server
