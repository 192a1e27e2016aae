// LeaderElection against a real etcd: who wins, with which epoch, how fast
// leadership moves on a resignation, an expiry or a deleted key, what a
// leader cut off from etcd does, and garbage in the election's keys.
#include "server/etcd/leader_election.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/etcd/etcd_client.h"
#include "server/etcd/etcd_test_fixture.h"

namespace craft::server {
namespace {

using LeaderElectionTest = EtcdTest<1>;
using LeaderElectionQuorumTest = EtcdTest<3>;

// The campaign's term, once it won within `timeout` (else the test fails).
LeaderTerm WonWithin(const BackgroundCampaign& campaign, absl::Duration timeout) {
  std::optional<absl::StatusOr<LeaderTerm>> result = campaign.Wait(timeout);
  EXPECT_TRUE(result.has_value()) << "no win within " << timeout;
  if (!result.has_value()) return LeaderTerm{};
  EXPECT_TRUE(result->ok()) << result->status();
  return result->value_or(LeaderTerm{});
}

TEST_F(LeaderElectionTest, TheFirstLeaderHasEpochOneAndAFollowerWaitsForItsResignation) {
  EXPECT_FALSE(GetKey(client(), EpochKey(kTestPrefix)).has_value());
  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  EXPECT_FALSE(a.Leading());
  absl::StatusOr<LeaderTerm> a_term = a.Campaign();
  ASSERT_TRUE(a_term.ok()) << a_term.status();
  EXPECT_EQ(a_term->epoch, 1);
  EXPECT_TRUE(a.Leading());
  EXPECT_TRUE(a.LastCampaignError().ok()) << a.LastCampaignError();
  std::optional<mvccpb::KeyValue> epoch = GetKey(client(), EpochKey(kTestPrefix));
  ASSERT_TRUE(epoch.has_value());
  EXPECT_EQ(epoch->value(), "1");
  std::optional<mvccpb::KeyValue> leader = GetKey(client(), LeaderKey(kTestPrefix));
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->value(), "a:1");
  EXPECT_EQ(leader->create_revision(), a_term->leader_revision);
  EXPECT_EQ(leader->lease(), a_term->lease_id);
  EXPECT_EQ(a.CurrentLeader().value_or("?"), "a:1");

  std::unique_ptr<EtcdClient> b_client = NewClient(absl::Seconds(2));
  LeaderElection b(b_client.get(), FastElection("b:1", absl::Seconds(2)));
  BackgroundCampaign b_campaign(&b);
  absl::SleepFor(absl::Milliseconds(500));  // ten of B's polls
  EXPECT_FALSE(b_campaign.Done()) << "B won while A leads";
  EXPECT_FALSE(b.Leading());
  EXPECT_TRUE(a.Leading());
  EXPECT_TRUE(b.LastCampaignError().ok()) << b.LastCampaignError();

  const absl::Time resigned = absl::Now();
  a.Resign();
  EXPECT_FALSE(a.Leading());
  const LeaderTerm b_term = WonWithin(b_campaign, absl::Seconds(3));
  EXPECT_LT(b_campaign.done_at() - resigned, absl::Seconds(1)) << "a resignation is not an expiry";
  EXPECT_EQ(b_term.epoch, 2);
  EXPECT_GT(b_term.leader_revision, a_term->leader_revision);
  EXPECT_TRUE(b.Leading());
  EXPECT_FALSE(a.Leading());
  EXPECT_EQ(a.CurrentLeader().value_or("?"), "b:1");
}

TEST_F(LeaderElectionTest, AStoppedLeaderIsReplacedOnlyOnceItsLeaseExpires) {
  constexpr absl::Duration kTtl = absl::Seconds(2);
  LeaderElection a(client(), FastElection("a:1", kTtl));
  absl::StatusOr<LeaderTerm> a_term = a.Campaign();
  ASSERT_TRUE(a_term.ok()) << a_term.status();

  std::unique_ptr<EtcdClient> b_client = NewClient(absl::Seconds(2));
  LeaderElection b(b_client.get(), FastElection("b:1", kTtl));
  std::atomic<bool> a_leading_when_b_won{true};
  BackgroundCampaign b_campaign(&b, [&] { a_leading_when_b_won = a.Leading(); });
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time stopped = absl::Now();
  a.Stop();  // a crash: no resignation, the keep-alive stops
  const LeaderTerm b_term = WonWithin(b_campaign, kTtl + absl::Seconds(3));
  // A renewed its lease at most ttl/3 before it stopped.
  EXPECT_GE(b_campaign.done_at() - stopped, kTtl * 2 / 3 - absl::Milliseconds(100));
  EXPECT_LT(b_campaign.done_at() - stopped, kTtl + absl::Seconds(2));
  EXPECT_FALSE(a_leading_when_b_won) << "two leaders at once";
  EXPECT_FALSE(a.Leading());
  EXPECT_EQ(b_term.epoch, a_term->epoch + 1);
  EXPECT_EQ(a.Campaign().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(LeaderElectionTest, StopUnblocksACampaign) {
  LeaderElection a(client(), FastElection("a:1"));
  ASSERT_TRUE(a.Campaign().ok());
  LeaderElection b(client(), FastElection("b:1"));
  BackgroundCampaign b_campaign(&b);
  absl::SleepFor(absl::Milliseconds(200));
  b.Stop();
  std::optional<absl::StatusOr<LeaderTerm>> result = b_campaign.Wait(absl::Seconds(1));
  ASSERT_TRUE(result.has_value()) << "Stop did not unblock Campaign";
  EXPECT_EQ(result->status().code(), absl::StatusCode::kCancelled) << result->status();
  EXPECT_FALSE(b.Leading());
  EXPECT_TRUE(a.Leading());
}

// Leadership ends for good for an election object: campaigning again on it
// must not take the leader key for a term that Leading() never admits to
// (nobody would lead until the process exited).
TEST_F(LeaderElectionTest, AnElectionThatLedDoesNotCampaignAgain) {
  LeaderElection a(client(), FastElection("a:1"));
  ASSERT_TRUE(a.Campaign().ok());
  absl::StatusOr<LeaderTerm> again = a.Campaign();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  EXPECT_TRUE(a.Leading());

  a.Resign();
  again = a.Campaign();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  EXPECT_FALSE(a.Leading());
  EXPECT_FALSE(GetKey(client(), LeaderKey(kTestPrefix)).has_value());

  LeaderElection b(client(), FastElection("b:1"));
  BackgroundCampaign b_campaign(&b);
  EXPECT_EQ(WonWithin(b_campaign, absl::Seconds(3)).epoch, 2);

  // The same after a loss the election noticed itself.
  LeaderElection c(client(), FastElection("c:1"));
  b.Resign();
  ASSERT_TRUE(c.Campaign().ok());
  c.MarkLost("test");
  EXPECT_FALSE(c.Leading());
  again = c.Campaign();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
}

TEST_F(LeaderElectionTest, OfTwoRivalsForAVacancyExactlyOneWins) {
  LeaderElection a(client(), FastElection("a:1"));
  ASSERT_TRUE(a.Campaign().ok());
  std::unique_ptr<EtcdClient> b_client = NewClient(absl::Seconds(2));
  std::unique_ptr<EtcdClient> c_client = NewClient(absl::Seconds(2));
  LeaderElection b(b_client.get(), FastElection("b:1"));
  LeaderElection c(c_client.get(), FastElection("c:1"));
  BackgroundCampaign b_campaign(&b);
  BackgroundCampaign c_campaign(&c);
  absl::SleepFor(absl::Milliseconds(200));
  a.Resign();
  ASSERT_TRUE(local_cluster::WaitFor([&] { return b_campaign.Done() || c_campaign.Done(); },
                                     absl::Seconds(2)));
  absl::SleepFor(absl::Milliseconds(300));  // six more polls for the loser
  ASSERT_NE(b_campaign.Done(), c_campaign.Done()) << "two winners";
  LeaderElection& winner = b_campaign.Done() ? b : c;
  const BackgroundCampaign& won = b_campaign.Done() ? b_campaign : c_campaign;
  const BackgroundCampaign& lost = b_campaign.Done() ? c_campaign : b_campaign;
  const LeaderTerm first = WonWithin(won, absl::ZeroDuration());
  EXPECT_EQ(first.epoch, 2);
  EXPECT_EQ(a.CurrentLeader().value_or("?"), winner.options().address);

  winner.Resign();
  const LeaderTerm second = WonWithin(lost, absl::Seconds(2));
  EXPECT_EQ(second.epoch, 3);
}

TEST_F(LeaderElectionTest, EveryNewLeaderHasAGreaterEpochAcrossHandovers) {
  int64_t last_epoch = 0;
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    LeaderElection election(client(), FastElection(absl::StrCat("p", round, ":1")));
    const absl::Time start = absl::Now();
    absl::StatusOr<LeaderTerm> term = election.Campaign();
    ASSERT_TRUE(term.ok()) << term.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(3));
    EXPECT_GT(term->epoch, last_epoch);
    last_epoch = term->epoch;
    std::optional<mvccpb::KeyValue> epoch = GetKey(client(), EpochKey(kTestPrefix));
    ASSERT_TRUE(epoch.has_value());
    EXPECT_EQ(epoch->value(), absl::StrCat(term->epoch));
    // Each way a term ends, twice.
    switch (round % 3) {
      case 0:
        election.Resign();
        break;
      case 1:  // an operator's delete
        DeleteKey(client(), LeaderKey(kTestPrefix));
        break;
      case 2:  // a crash: the lease expires
        election.Stop();
        break;
    }
  }
  EXPECT_EQ(last_epoch, 6);
}

// A leader cut off from etcd by `cut_off` (a SIGSTOP'ed or dead etcd, or a
// partition: no renewal reaches etcd) must stop leading, and say so through
// its hook, before etcd can expire its lease and hand leadership to another
// planner, however long its own calls to etcd take to fail (the client has
// the default request timeout: a keep-alive against three silent members
// takes three of them). `renewals_after_cut`: how long etcd may still renew
// the lease after the cut (an etcd leader that lost its quorum serves until
// it notices, within two election timeouts). After `heal`, a new planner
// wins a later epoch.
void ExpectLeadershipEndsWithinTheTtl(const std::function<std::unique_ptr<EtcdClient>()>& connect,
                                      const std::function<void()>& cut_off,
                                      absl::Duration renewals_after_cut,
                                      const std::function<void()>& heal) {
  constexpr absl::Duration kTtl = absl::Seconds(1);
  std::unique_ptr<EtcdClient> a_client = connect();
  LeaderElection a(a_client.get(), FastElection("a:1", kTtl));
  LostHook hook;
  a.SetOnLost(hook.Hook());
  absl::StatusOr<LeaderTerm> a_term = a.Campaign();
  ASSERT_TRUE(a_term.ok()) << a_term.status();
  absl::SleepFor(absl::Milliseconds(500));  // a renewal or so
  ASSERT_TRUE(a.Leading());

  const absl::Time cut = absl::Now();
  cut_off();
  ASSERT_TRUE(local_cluster::WaitFor([&] { return !a.Leading(); }, kTtl + absl::Seconds(2)));
  EXPECT_LE(absl::Now() - cut, renewals_after_cut + kTtl + absl::Milliseconds(250));
  ASSERT_TRUE(local_cluster::WaitFor([&] { return hook.calls() > 0; }, absl::Seconds(10)));
  // The lease's deadline, then at most one keep-alive interval (ttl/3).
  EXPECT_LE(hook.at() - cut, renewals_after_cut + kTtl + kTtl / 3 + absl::Milliseconds(500));
  EXPECT_NE(hook.why().find("no lease renewal"), std::string::npos) << hook.why();

  heal();
  std::unique_ptr<EtcdClient> c_client = connect();
  LeaderElection c(c_client.get(), FastElection("c:1", kTtl));
  BackgroundCampaign c_campaign(&c);
  const LeaderTerm c_term = WonWithin(c_campaign, absl::Seconds(15));
  EXPECT_GT(c_term.epoch, a_term->epoch);
  EXPECT_FALSE(a.Leading()) << "leadership is lost for good";
  EXPECT_EQ(hook.calls(), 1);
}

TEST_F(LeaderElectionTest, ALeaderWhoseEtcdIsPausedStopsLeadingWithinTheTtl) {
  ExpectLeadershipEndsWithinTheTtl(
      [&] { return NewClient(absl::Seconds(2)); }, [&] { cluster().Pause(0); },
      /*renewals_after_cut=*/absl::ZeroDuration(), [&] { cluster().Resume(0); });
}

TEST_F(LeaderElectionTest, ALeaderWhoseEtcdIsKilledStopsLeadingWithinTheTtl) {
  ExpectLeadershipEndsWithinTheTtl(
      [&] { return NewClient(absl::Seconds(2)); }, [&] { cluster().Kill(0); },
      /*renewals_after_cut=*/absl::ZeroDuration(), [&] { ASSERT_TRUE(cluster().Restart(0).ok()); });
}

TEST_F(LeaderElectionQuorumTest, ALeaderWithoutAnEtcdQuorumStopsLeadingWithinTheTtl) {
  auto kill_two = [&] {  // the member A talks to and another
    cluster().Kill(0);
    cluster().Kill(1);
  };
  auto restart_them = [&] {
    ASSERT_TRUE(cluster().Restart(0).ok());
    ASSERT_TRUE(cluster().Restart(1).ok());
  };
  ExpectLeadershipEndsWithinTheTtl([&] { return NewClient(absl::Seconds(2)); }, kill_two,
                                   /*renewals_after_cut=*/absl::Seconds(1), restart_them);
}

TEST_F(LeaderElectionQuorumTest, ALeaderWhoseEtcdMembersAreAllPausedStopsLeadingWithinTheTtl) {
  auto pause_all = [&] {
    for (int i = 0; i < cluster().size(); ++i) cluster().Pause(i);
  };
  auto resume_all = [&] {
    for (int i = 0; i < cluster().size(); ++i) cluster().Resume(i);
  };
  ExpectLeadershipEndsWithinTheTtl([&] { return NewClient(absl::Seconds(2)); }, pause_all,
                                   /*renewals_after_cut=*/absl::ZeroDuration(), resume_all);
}

TEST_F(LeaderElectionTest, GarbageInTheEpochKeyBlocksTheCampaignWithDataLoss) {
  LeaderElection a(client(), FastElection("a:1"));
  BackgroundCampaign campaign(&a);
  // Not a number, negative, past 2^62 - 2 (the next epoch would not fit).
  for (const std::string& garbage :
       {std::string("garbage\x01\xff", 9), std::string("-1"), std::string("4611686018427387903")}) {
    SCOPED_TRACE(garbage);
    PutKey(client(), EpochKey(kTestPrefix), garbage);
    const std::string quoted =
        absl::StrCat("'", absl::CHexEscape(garbage), "' (", garbage.size(), " bytes)");
    ASSERT_TRUE(local_cluster::WaitFor(
        [&] { return a.LastCampaignError().message().find(quoted) != std::string::npos; },
        absl::Seconds(3)))
        << a.LastCampaignError();
    const absl::Status error = a.LastCampaignError();
    EXPECT_EQ(error.code(), absl::StatusCode::kDataLoss) << error;
    EXPECT_NE(error.message().find(EpochKey(kTestPrefix)), std::string::npos) << error;
    EXPECT_FALSE(campaign.Done());
    EXPECT_FALSE(a.Leading());
    EXPECT_FALSE(GetKey(client(), LeaderKey(kTestPrefix)).has_value());
  }
  DeleteKey(client(), EpochKey(kTestPrefix));
  const LeaderTerm term = WonWithin(campaign, absl::Seconds(3));
  EXPECT_GE(term.epoch, 1);
  EXPECT_TRUE(a.LastCampaignError().ok()) << a.LastCampaignError();
}

TEST_F(LeaderElectionTest, CurrentLeaderRefusesAGarbledAddress) {
  LeaderElection observer(client(), FastElection("observer:1"));
  absl::StatusOr<std::string> leader = observer.CurrentLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(*leader, "") << "no leader yet";

  for (const std::string& garbage : {std::string(), std::string(257, 'x')}) {
    SCOPED_TRACE(garbage.size());
    PutKey(client(), LeaderKey(kTestPrefix), garbage);
    leader = observer.CurrentLeader();
    EXPECT_EQ(leader.status().code(), absl::StatusCode::kDataLoss) << leader.status();
    EXPECT_NE(leader.status().message().find(LeaderKey(kTestPrefix)), std::string::npos)
        << leader.status();
    EXPECT_NE(leader.status().message().find(absl::StrCat("(", garbage.size(), " bytes)")),
              std::string::npos)
        << leader.status();
  }

  const std::string longest(256, 'h');
  PutKey(client(), LeaderKey(kTestPrefix), longest);
  EXPECT_EQ(observer.CurrentLeader().value_or("?"), longest);
}

}  // namespace
}  // namespace craft::server
