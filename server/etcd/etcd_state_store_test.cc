// EtcdStateStore and ReadEtcdState against a real etcd: a leader's state
// round trip, writes refused to anyone who no longer leads, what garbage in
// the state key reads as, and the repair of a deleted state key.
#include "server/etcd/etcd_state_store.h"

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "craft/v1/layout.pb.h"
#include "gtest/gtest.h"
#include "server/config.h"
#include "server/etcd/etcd_client.h"
#include "server/etcd/etcd_test_fixture.h"
#include "server/etcd/follower_view.h"
#include "server/etcd/leader_election.h"
#include "server/internal/test_support.h"
#include "server/state_store.h"

namespace craft::server {
namespace {

using ::craft::server::testing::SamplePlannerState;

using EtcdStateStoreTest = EtcdTest<1>;

void ExpectSameState(const PlannerState& got, const PlannerState& want) {
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_EQ(got.committed.SerializeAsString(), want.committed.SerializeAsString());
  ASSERT_EQ(got.previous.has_value(), want.previous.has_value());
  if (want.previous.has_value()) {
    EXPECT_EQ(got.previous->SerializeAsString(), want.previous->SerializeAsString());
  }
}

// What ReadEtcdState finds, which must be a state.
PlannerState ReadState(EtcdClient* client) {
  absl::StatusOr<std::optional<PlannerState>> state = ReadEtcdState(client, StateKey(kTestPrefix));
  EXPECT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state.ok() && state->has_value()) << "no state in etcd";
  return state.ok() && state->has_value() ? **state : PlannerState{};
}

bool StateKeyExists(EtcdClient* client) {
  return GetKey(client, StateKey(kTestPrefix)).has_value();
}

TEST_F(EtcdStateStoreTest, ALeadersStateRoundTrips) {
  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  EtcdStateStore store(&a, *term);
  absl::StatusOr<std::optional<PlannerState>> loaded = store.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value()) << "nothing saved yet";

  ASSERT_TRUE(store.Save(SamplePlannerState(term->epoch, 1)).ok());
  PlannerState state = SamplePlannerState(term->epoch, 3);
  state.previous = SamplePlannerState(term->epoch, 1).committed;
  const absl::Status saved = store.Save(state);
  ASSERT_TRUE(saved.ok()) << saved;

  loaded = store.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameState(**loaded, state);
  // A follower reads the same, in the state file's encoding.
  std::unique_ptr<EtcdClient> follower = NewClient(absl::Seconds(2));
  ExpectSameState(ReadState(follower.get()), state);
  absl::StatusOr<etcdserverpb::RangeResponse> raw = follower->Range(RangeOf(StateKey(kTestPrefix)));
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_EQ(raw->kvs_size(), 1);
  EXPECT_EQ(raw->kvs(0).value(), EncodePlannerState(state).value_or(""));
  EXPECT_EQ(raw->kvs(0).lease(), 0) << "the state must outlive the leader's lease";
}

TEST_F(EtcdStateStoreTest, ADeposedLeaderCannotWrite) {
  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  LostHook a_lost;
  a.SetOnLost(a_lost.Hook());
  absl::StatusOr<LeaderTerm> a_term = a.Campaign();
  ASSERT_TRUE(a_term.ok()) << a_term.status();
  EtcdStateStore a_store(&a, *a_term);
  ASSERT_TRUE(a_store.Save(SamplePlannerState(a_term->epoch, 1)).ok());

  // Behind A's back (an operator, or A's lease lost in a partition).
  std::unique_ptr<EtcdClient> b_client = NewClient(absl::Seconds(2));
  DeleteKey(b_client.get(), LeaderKey(kTestPrefix));
  LeaderElection b(b_client.get(), FastElection("b:1", absl::Seconds(2)));
  absl::StatusOr<LeaderTerm> b_term = b.Campaign();
  ASSERT_TRUE(b_term.ok()) << b_term.status();
  EXPECT_GT(b_term->epoch, a_term->epoch);

  const absl::Status refused = a_store.Save(SamplePlannerState(a_term->epoch, 2));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_FALSE(a.Leading());
  // The hook runs on whichever thread noticed first: this one (the guarded
  // write) or A's keep-alive thread (the leader key check).
  EXPECT_TRUE(local_cluster::WaitFor([&] { return a_lost.calls() > 0; }, absl::Seconds(2)));
  EXPECT_EQ(a_lost.calls(), 1);

  EtcdStateStore b_store(&b, *b_term);
  PlannerState b_state = SamplePlannerState(b_term->epoch, 1);
  b_state.previous = SamplePlannerState(a_term->epoch, 1).committed;
  const absl::Status saved = b_store.Save(b_state);
  ASSERT_TRUE(saved.ok()) << saved;
  ExpectSameState(ReadState(client()), b_state);
  EXPECT_TRUE(b.Leading());
}

// The guarded write itself, whatever the keep-alive thread saw: a term whose
// leader key is not the one in etcd writes nothing and ends leadership.
TEST_F(EtcdStateStoreTest, AWriteGuardedByAnotherTermIsRefusedAndEndsLeadership) {
  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  LostHook a_lost;
  a.SetOnLost(a_lost.Hook());
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  LeaderTerm stale = *term;
  stale.leader_revision += 1000;
  EtcdStateStore store(&a, stale);
  const absl::Status refused = store.Save(SamplePlannerState(term->epoch, 1));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find(LeaderKey(kTestPrefix)), std::string::npos) << refused;
  EXPECT_EQ(a_lost.calls(), 1) << "the hook runs on the writing thread";
  EXPECT_FALSE(a.Leading());
  EXPECT_FALSE(StateKeyExists(client()));
}

TEST_F(EtcdStateStoreTest, AResignedLeaderDoesNotWrite) {
  LeaderElection a(client(), FastElection("a:1"));
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  EtcdStateStore store(&a, *term);
  a.Resign();
  EXPECT_EQ(store.Save(SamplePlannerState(term->epoch, 1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(StateKeyExists(client()));
}

TEST_F(EtcdStateStoreTest, GarbageInTheStateKeyIsDataLossNamingTheKey) {
  const std::string good = EncodePlannerState(SamplePlannerState(3, 7)).value_or("");
  ASSERT_FALSE(good.empty());
  std::string flipped = good;
  flipped.back() ^= 0x55;
  const struct {
    std::string name;
    std::string value;
    std::string says;  // in the message, besides the key
  } kCases[] = {
      {"garbage", "garbage\x01\xff", "corrupt"},
      {"empty", "", "corrupt"},
      {"truncated", good.substr(0, good.size() - 3), "corrupt"},
      {"flipped layout byte", flipped, "corrupt"},
      {"unknown schema version", "craft-planner-state 9\nepoch 3\nseq 7\n",
       "unknown schema version"},
      {"oversized", std::string(5 << 20, 'x'), "bytes"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    PutKey(client(), StateKey(kTestPrefix), c.value);
    absl::StatusOr<std::optional<PlannerState>> state =
        ReadEtcdState(client(), StateKey(kTestPrefix));
    EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss) << state.status();
    EXPECT_NE(state.status().message().find(StateKey(kTestPrefix)), std::string::npos)
        << state.status();
    EXPECT_NE(state.status().message().find(c.says), std::string::npos) << state.status();
  }

  // A leader's Load reads the same way: never a fresh start over garbage.
  LeaderElection a(client(), FastElection("a:1"));
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  EXPECT_EQ(EtcdStateStore(&a, *term).Load().status().code(), absl::StatusCode::kDataLoss);

  // Deleted, the key reads as nothing saved yet.
  DeleteKey(client(), StateKey(kTestPrefix));
  absl::StatusOr<std::optional<PlannerState>> state =
      ReadEtcdState(client(), StateKey(kTestPrefix));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->has_value());
}

TEST_F(EtcdStateStoreTest, RepairIfDeletedWritesTheLastSavedStateBack) {
  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  EtcdStateStore store(&a, *term);
  store.RepairIfDeleted();
  EXPECT_FALSE(StateKeyExists(client())) << "nothing saved, nothing to repair";

  ASSERT_TRUE(store.Save(SamplePlannerState(term->epoch, 1)).ok());
  PlannerState last = SamplePlannerState(term->epoch, 2);
  last.previous = SamplePlannerState(term->epoch, 1).committed;
  ASSERT_TRUE(store.Save(last).ok());
  absl::StatusOr<etcdserverpb::RangeResponse> before =
      client()->Range(RangeOf(StateKey(kTestPrefix)));
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->kvs_size(), 1);
  store.RepairIfDeleted();  // present: left alone
  absl::StatusOr<etcdserverpb::RangeResponse> after =
      client()->Range(RangeOf(StateKey(kTestPrefix)));
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->kvs_size(), 1);
  EXPECT_EQ(after->kvs(0).mod_revision(), before->kvs(0).mod_revision());

  DeleteKey(client(), StateKey(kTestPrefix));
  store.RepairIfDeleted();
  ExpectSameState(ReadState(client()), last);
  EXPECT_TRUE(a.Leading());

  // Once it no longer leads, the planner leaves the key to the next leader.
  a.Resign();
  DeleteKey(client(), StateKey(kTestPrefix));
  store.RepairIfDeleted();
  EXPECT_FALSE(StateKeyExists(client()));
}

// Placement groups under high availability: each group's state at its own
// key, written by the leader's store for it and handed on by a follower's
// view per group.
TEST_F(EtcdStateStoreTest, EachPlacementGroupHasItsOwnKeyAndFollowersSeeEach) {
  PlannerConfig config;
  EXPECT_EQ(GroupStateName(config, StateKey(kTestPrefix), kDefaultGroup), StateKey(kTestPrefix));
  config.groups.push_back(PlacementGroup{"prefill", "", PlannerConfig{}});
  config.groups.push_back(PlacementGroup{"decode", "", PlannerConfig{}});
  const std::string prefill_key = GroupStateName(config, StateKey(kTestPrefix), "prefill");
  const std::string decode_key = GroupStateName(config, StateKey(kTestPrefix), "decode");
  EXPECT_EQ(prefill_key, StateKey(kTestPrefix) + ".prefill");

  LeaderElection a(client(), FastElection("a:1", absl::Seconds(2)));
  absl::StatusOr<LeaderTerm> term = a.Campaign();
  ASSERT_TRUE(term.ok()) << term.status();
  EtcdStateStore prefill(&a, *term, prefill_key);
  EtcdStateStore decode(&a, *term, decode_key);
  ASSERT_TRUE(prefill.Save(SamplePlannerState(term->epoch, 4)).ok());
  ASSERT_TRUE(decode.Save(SamplePlannerState(term->epoch, 7)).ok());
  EXPECT_EQ((*prefill.Load())->committed.version(),
            SamplePlannerState(term->epoch, 4).committed.version());
  EXPECT_EQ((*decode.Load())->committed.version(),
            SamplePlannerState(term->epoch, 7).committed.version());
  EXPECT_FALSE(StateKeyExists(client())) << "no group wrote the single-group key";

  LeaderElection b(client(), FastElection("b:1", absl::Seconds(2)));
  absl::Mutex mu;
  std::map<std::string, std::string> seen;  // group -> version
  FollowerView view(
      &b, {{"prefill", prefill_key}, {"decode", decode_key}},
      [&](const std::string& group, const PlannerState& state) {
        absl::MutexLock lock(&mu);
        seen[group] = state.committed.version();
      },
      [](const std::string&) {}, absl::Milliseconds(100));
  view.Start();
  auto both_seen = [&] {
    absl::MutexLock lock(&mu);
    return seen.size() == 2;
  };
  for (int i = 0; i < 100 && !both_seen(); ++i) absl::SleepFor(absl::Milliseconds(50));
  view.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(seen["prefill"], SamplePlannerState(term->epoch, 4).committed.version());
  EXPECT_EQ(seen["decode"], SamplePlannerState(term->epoch, 7).committed.version());
}

}  // namespace
}  // namespace craft::server
