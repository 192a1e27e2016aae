#include "agent/planner_targets.h"

#include "gtest/gtest.h"

namespace craft::agent {
namespace {

TEST(PlannerTargetsTest, OneAddressIsAlwaysTheTarget) {
  PlannerTargets targets("planner:7070");
  EXPECT_EQ(targets.Current(), "planner:7070");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, /*healthy=*/false));
  EXPECT_EQ(targets.Current(), "planner:7070");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, /*healthy=*/true));
  EXPECT_EQ(targets.Current(), "planner:7070");
}

TEST(PlannerTargetsTest, FailuresWalkTheConfiguredList) {
  PlannerTargets targets(" a:1, b:2 ,,c:3");
  ASSERT_EQ(targets.configured().size(), 3u);
  EXPECT_EQ(targets.Current(), "a:1");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, false));
  EXPECT_EQ(targets.Current(), "b:2");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, false));
  EXPECT_EQ(targets.Current(), "c:3");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, false));
  EXPECT_EQ(targets.Current(), "a:1");
}

TEST(PlannerTargetsTest, AHealthyStreamIsRetriedWhereItWas) {
  PlannerTargets targets("a:1,b:2");
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, /*healthy=*/true));
  EXPECT_EQ(targets.Current(), "a:1");
}

TEST(PlannerTargetsTest, AFollowersRedirectIsFollowedAtOnce) {
  PlannerTargets targets("a:1,b:2,c:3");
  EXPECT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("c:3", false));
  EXPECT_EQ(targets.Current(), "c:3");
  // The leader serves, then goes away: back to the follower that named it,
  // soon, without the backoff growing.
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, true));
  EXPECT_EQ(targets.Current(), "c:3");
  EXPECT_EQ(PlannerTargets::Next::kSoon, targets.OnStreamEnded(std::nullopt, false));
  EXPECT_EQ(targets.Current(), "a:1");
  // And it names the new leader.
  EXPECT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("b:2", false));
  EXPECT_EQ(targets.Current(), "b:2");
}

TEST(PlannerTargetsTest, RedirectLoopsAreBroken) {
  PlannerTargets targets("a:1,b:2");
  // Stale followers bouncing the agent between them.
  EXPECT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("b:2", false));
  EXPECT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("a:1", false));
  EXPECT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("b:2", false));
  EXPECT_EQ(PlannerTargets::Next::kSoon, targets.OnStreamEnded("a:1", false));  // a:1 is away
  EXPECT_EQ(targets.Current(), "a:1");
  // A redirect to where the agent already is means nothing.
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded("a:1", false));
}

TEST(PlannerTargetsTest, AFollowerWithoutALeaderIsAskedAgainSoon) {
  PlannerTargets targets("a:1,b:2");
  EXPECT_EQ(PlannerTargets::Next::kSoon, targets.OnStreamEnded(std::string(), false));
  EXPECT_EQ(targets.Current(), "a:1");
  // Not a follower's answer: the next address.
  EXPECT_EQ(PlannerTargets::Next::kBackoff, targets.OnStreamEnded(std::nullopt, false));
  EXPECT_EQ(targets.Current(), "b:2");
}

TEST(PlannerTargetsTest, QuickRetriesOfAFollowerAreBounded) {
  PlannerTargets targets("a:1,b:2");
  int quick = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("b:2", false));  // a: "b leads"
    if (targets.OnStreamEnded(std::nullopt, false) == PlannerTargets::Next::kSoon)
      ++quick;  // b is dead
  }
  EXPECT_EQ(quick, PlannerTargets::kMaxQuickRetries);
  // A healthy stream makes quick retries available again.
  targets.OnStreamEnded(std::nullopt, true);
  ASSERT_EQ(PlannerTargets::Next::kAtOnce, targets.OnStreamEnded("b:2", false));
  EXPECT_EQ(PlannerTargets::Next::kSoon, targets.OnStreamEnded(std::nullopt, false));
}

}  // namespace
}  // namespace craft::agent
