// High availability on a real etcd (a 3-member cluster on loopback from
// Debian's etcd-server): three craft-planner replicas elect a leader, agents
// are given every replica's address and follow redirects. Skipped without
// the etcd binary.
#include <signal.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/etcd_cluster.h"
#include "tests/integration/local_cluster.h"

namespace craft::testing {
namespace {

constexpr int kReplicas = 3;

class HaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (EtcdBinary().empty()) GTEST_SKIP() << "no etcd binary (Debian's etcd-server)";
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    etcd_ = std::make_unique<EtcdCluster>(3, TempDir(absl::StrCat("etcd-", test)));
    ASSERT_TRUE(etcd_->Start().ok());
    ClusterOptions options;
    options.num_nodes = 2;
    options.gpus_per_node = 2;
    options.planners = kReplicas;
    options.etcd_endpoints = etcd_->endpoint_list();
    options.lease_ttl_s = 2;
    cluster_ = std::make_unique<LocalCluster>(options);
    absl::Status started = cluster_->Start();
    ASSERT_TRUE(started.ok()) << started;
    leader_ = WaitForLeader(-1);
    ASSERT_GE(leader_, 0) << "no leader elected";
    ASSERT_TRUE(cluster_->WaitForAgentsConnected(absl::Seconds(30)));
  }

  // The replica that says it leads (other than `not_this`), or -1.
  int WaitForLeader(int not_this, absl::Duration timeout = absl::Seconds(20)) {
    int found = -1;
    WaitFor(
        [&] {
          for (int i = 0; i < kReplicas; ++i) {
            if (i == not_this || !cluster_->Running(Role::kPlanner, i)) continue;
            cluster_->UsePlanner(i);
            absl::StatusOr<craft::v1::LayoutStatus> status = cluster_->GetLayout();
            if (status.ok() && status->from_leader()) {
              found = i;
              return true;
            }
          }
          return false;
        },
        timeout);
    if (found >= 0) cluster_->UsePlanner(found);
    return found;
  }

  // Replans on the leader until a version other than `old_version` commits.
  std::string Commit(const std::string& old_version, absl::Duration timeout) {
    std::string version;
    WaitFor(
        [&] {
          auto replan = cluster_->Replan(/*force=*/true);
          if (!replan.ok() || replan->version().empty()) {
            absl::SleepFor(absl::Milliseconds(100));
            return false;
          }
          auto next = cluster_->WaitForNewVersion(old_version, absl::Seconds(8));
          if (!next.ok()) return false;
          version = *next;
          return true;
        },
        timeout);
    return version;
  }

  // Every worker serves `version` (its slots verified under it).
  bool AllServe(const std::string& version) {
    return WaitFor([&] { return cluster_->AllWorkersVerified(version); }, absl::Seconds(30));
  }

  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<LocalCluster> cluster_;
  int leader_ = -1;
};

int64_t EpochOf(const std::string& version) {
  return std::stoll(version.substr(0, version.find('.')));
}

TEST_F(HaTest, ANewLeaderCommitsWithinTenSecondsOfTheOldOnesSigkill) {
  const std::string first = Commit("0.0", absl::Seconds(40));
  ASSERT_FALSE(first.empty()) << cluster_->planner(leader_).Log();
  ASSERT_TRUE(AllServe(first));

  const absl::Time killed = absl::Now();
  cluster_->StopPlanner(leader_);  // SIGKILL: no resignation, the lease must expire
  const int next = WaitForLeader(leader_);
  ASSERT_GE(next, 0);
  const std::string second = Commit(first, absl::Seconds(30));
  const absl::Duration failover = absl::Now() - killed;
  ASSERT_FALSE(second.empty()) << cluster_->planner(next).Log();
  std::cout << "failover (SIGKILL to the first commit by the new leader): "
            << absl::FormatDuration(failover) << "\n";
  EXPECT_LT(failover, absl::Seconds(10));
  EXPECT_GT(EpochOf(second), EpochOf(first));
  EXPECT_TRUE(AllServe(second));
  // Followers answer reads with the committed state and name the leader.
  for (int i = 0; i < kReplicas; ++i) {
    if (i == next || !cluster_->Running(Role::kPlanner, i)) continue;
    cluster_->UsePlanner(i);
    ASSERT_TRUE(WaitFor(
        [&] {
          auto status = cluster_->GetLayout();
          return status.ok() && status->committed().version() == second &&
                 status->leader() == cluster_->planner_address(next) && !status->from_leader();
        },
        absl::Seconds(10)));
    auto replan = cluster_->Replan(/*force=*/true);
    EXPECT_EQ(replan.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(replan.status().message().find("not the leader"), std::string::npos)
        << replan.status();
  }
}

TEST_F(HaTest, ALeaderPausedPastItsLeaseIsDeposedAndItsWritesFail) {
  const std::string first = Commit("0.0", absl::Seconds(40));
  ASSERT_FALSE(first.empty());
  Process& old_leader = cluster_->planner(leader_);
  ::kill(old_leader.pid(), SIGSTOP);
  const int next = WaitForLeader(leader_);
  // The paused process still holds its agents' connections (the kernel keeps
  // them open); they come over once it resumes and drains, or once gRPC's
  // keepalive gives up on it.
  ::kill(old_leader.pid(), SIGCONT);
  ASSERT_GE(next, 0) << "no new leader while the old one was stopped";
  // It finds itself deposed, stops pushing and follows.
  EXPECT_TRUE(WaitFor([&] { return old_leader.Log().find("lost leadership") != std::string::npos; },
                      absl::Seconds(10)))
      << old_leader.Log();
  EXPECT_TRUE(WaitFor([&] { return old_leader.Log().find("following again") != std::string::npos; },
                      absl::Seconds(15)));
  cluster_->UsePlanner(next);
  const std::string second = Commit(first, absl::Seconds(30));
  ASSERT_FALSE(second.empty()) << cluster_->planner(next).Log();
  EXPECT_GT(EpochOf(second), EpochOf(first));
  cluster_->UsePlanner(leader_);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto status = cluster_->GetLayout();
        return status.ok() && !status->from_leader() && status->committed().version() == second;
      },
      absl::Seconds(15)));
  EXPECT_EQ(cluster_->Replan(/*force=*/true).status().code(), absl::StatusCode::kUnavailable);
  // Every worker serves the new leader's commit.
  EXPECT_TRUE(AllServe(second));
}

TEST_F(HaTest, OneEtcdMemberLostKeepsServiceTwoLostPauseItAndQuorumBackResumesIt) {
  const std::string first = Commit("0.0", absl::Seconds(40));
  ASSERT_FALSE(first.empty());
  etcd_->Kill(2);
  const std::string second = Commit(first, absl::Seconds(30));
  ASSERT_FALSE(second.empty()) << "one member down must not stop service";

  etcd_->Kill(1);  // no quorum: the leader's lease cannot be renewed
  EXPECT_TRUE(WaitFor(
      [&] { return cluster_->planner(leader_).Log().find("lost leadership") != std::string::npos; },
      absl::Seconds(10)));
  auto refused = cluster_->Replan(/*force=*/true);
  EXPECT_FALSE(refused.ok() && refused->version() != "");
  // Workers keep serving the committed layout meanwhile.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_TRUE(cluster_->AllWorkersVerified(second));

  ASSERT_TRUE(etcd_->Restart(1).ok());
  ASSERT_TRUE(etcd_->Restart(2).ok());
  const int next = WaitForLeader(-1, absl::Seconds(30));
  ASSERT_GE(next, 0) << "no leader after quorum returned";
  ASSERT_TRUE(cluster_->WaitForAgentsConnected(absl::Seconds(30)));
  const std::string third = Commit(second, absl::Seconds(40));
  EXPECT_FALSE(third.empty());
  EXPECT_GT(EpochOf(third), EpochOf(second));
  EXPECT_TRUE(AllServe(third));
}

}  // namespace
}  // namespace craft::testing
