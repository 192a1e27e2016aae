// EtcdClient against a real etcd: the KV calls, leases and watches on one
// member, failover and bounded failure on three.
#include "server/etcd/etcd_client.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/etcd/etcd_test_fixture.h"

namespace craft::server {
namespace {

using EtcdClientTest = EtcdTest<1>;
using EtcdClientQuorumTest = EtcdTest<3>;

etcdserverpb::PutRequest PutOf(const std::string& key, const std::string& value,
                               int64_t lease = 0) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  return request;
}

etcdserverpb::DeleteRangeRequest DeleteOf(const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  return request;
}

bool Unreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

TEST_F(EtcdClientTest, PutRangeTxnDeleteRangeRoundTrip) {
  absl::StatusOr<etcdserverpb::PutResponse> put = client()->Put(PutOf("/t/a", "one"));
  ASSERT_TRUE(put.ok()) << put.status();
  const int64_t created = put->header().revision();

  absl::StatusOr<etcdserverpb::RangeResponse> range = client()->Range(RangeOf("/t/a"));
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "one");
  EXPECT_EQ(range->kvs(0).create_revision(), created);
  EXPECT_EQ(range->kvs(0).mod_revision(), created);

  // A guarded write that holds: the key is as we read it.
  etcdserverpb::TxnRequest guarded;
  *guarded.add_compare() = ModRevisionIs("/t/a", created);
  *guarded.add_compare() = CreateRevisionIs("/t/absent", 0);
  *guarded.add_success() = PutOp("/t/a", "two");
  *guarded.add_failure() = RangeOp("/t/a");
  absl::StatusOr<etcdserverpb::TxnResponse> txn = client()->Txn(guarded);
  ASSERT_TRUE(txn.ok()) << txn.status();
  EXPECT_TRUE(txn->succeeded());
  const int64_t modified = txn->header().revision();
  EXPECT_GT(modified, created);

  // The same write again: the compare fails, the failure branch reads.
  txn = client()->Txn(guarded);
  ASSERT_TRUE(txn.ok()) << txn.status();
  EXPECT_FALSE(txn->succeeded());
  ASSERT_EQ(txn->responses_size(), 1);
  ASSERT_EQ(txn->responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(txn->responses(0).response_range().kvs(0).value(), "two");
  EXPECT_EQ(txn->responses(0).response_range().kvs(0).create_revision(), created);
  EXPECT_EQ(txn->responses(0).response_range().kvs(0).mod_revision(), modified);

  absl::StatusOr<etcdserverpb::DeleteRangeResponse> deleted =
      client()->DeleteRange(DeleteOf("/t/a"));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted(), 1);
  range = client()->Range(RangeOf("/t/a"));
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->kvs_size(), 0);
  deleted = client()->DeleteRange(DeleteOf("/t/a"));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted(), 0);
}

TEST_F(EtcdClientTest, LeaseGrantKeepAliveRevoke) {
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client()->LeaseGrant(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_NE(lease->id(), 0);
  EXPECT_GE(lease->ttl(), 2);
  ASSERT_TRUE(client()->Put(PutOf("/t/leased", "x", lease->id())).ok());

  absl::StatusOr<int64_t> ttl = client()->LeaseKeepAliveOnce(lease->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, 0);

  // Revoking the lease deletes the keys attached to it.
  const absl::Status revoked = client()->LeaseRevoke(lease->id());
  ASSERT_TRUE(revoked.ok()) << revoked;
  absl::StatusOr<etcdserverpb::RangeResponse> range = client()->Range(RangeOf("/t/leased"));
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->kvs_size(), 0);
  ttl = client()->LeaseKeepAliveOnce(lease->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_LE(*ttl, 0) << "a revoked lease cannot be renewed";
}

TEST_F(EtcdClientTest, ALeaseExpiresWithoutKeepAlive) {
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client()->LeaseGrant(1);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client()->Put(PutOf("/t/leased", "x", lease->id())).ok());
  EXPECT_TRUE(local_cluster::WaitFor(
      [&] {
        absl::StatusOr<etcdserverpb::RangeResponse> range = client()->Range(RangeOf("/t/leased"));
        return range.ok() && range->kvs_size() == 0;
      },
      absl::Seconds(5)));
  absl::StatusOr<int64_t> ttl = client()->LeaseKeepAliveOnce(lease->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_LE(*ttl, 0);
}

TEST_F(EtcdClientTest, GiveUpBoundsACallBelowTheRequestTimeout) {
  ASSERT_TRUE(client()->Put(PutOf("/t/k", "v")).ok());
  absl::StatusOr<etcdserverpb::RangeResponse> range =
      client()->Range(RangeOf("/t/k"), absl::InfinitePast());
  EXPECT_EQ(range.status().code(), absl::StatusCode::kDeadlineExceeded) << range.status();
  EXPECT_EQ(client()->LeaseKeepAliveOnce(1, absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);

  cluster().Pause(0);
  const absl::Time start = absl::Now();
  range = client()->Range(RangeOf("/t/k"), start + absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  cluster().Resume(0);
  EXPECT_EQ(range.status().code(), absl::StatusCode::kDeadlineExceeded) << range.status();
  EXPECT_LT(took, absl::Seconds(1)) << "the 2 s request timeout was not cut short";
  EXPECT_TRUE(client()->Range(RangeOf("/t/k")).ok());
}

// A client whose only member died and came back reaches it at once: a new
// planner's campaign after an etcd restart must not wait on gRPC's
// reconnection.
TEST_F(EtcdClientTest, ARestartedMemberIsReachedAgainAtOnce) {
  ASSERT_TRUE(client()->Put(PutOf("/t/k", "v")).ok());
  cluster().Kill(0);
  std::unique_ptr<EtcdClient> client = NewClient(absl::Milliseconds(500));
  EXPECT_FALSE(client->Put(PutOf("/t/k", "w")).ok());
  EXPECT_FALSE(this->client()->Put(PutOf("/t/k", "w")).ok());
  ASSERT_TRUE(cluster().Restart(0).ok());
  const absl::Time restarted = absl::Now();
  // etcd itself takes about a second to serve again.
  ASSERT_TRUE(local_cluster::WaitFor([&] { return client->Range(RangeOf("/t/k")).ok(); },
                                     absl::Seconds(10)));
  EXPECT_LT(absl::Now() - restarted, absl::Seconds(5));
  absl::StatusOr<etcdserverpb::RangeResponse> range = this->client()->Range(RangeOf("/t/k"));
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "v");
}

TEST_F(EtcdClientTest, WatchDeliversAPut) {
  absl::StatusOr<etcdserverpb::RangeResponse> before = client()->Range(RangeOf("/t/watched"));
  ASSERT_TRUE(before.ok()) << before.status();
  // From the next revision on: the put below is delivered even if it lands
  // before the watch is created.
  etcdserverpb::WatchCreateRequest create;
  create.set_key("/t/watched");
  create.set_start_revision(before->header().revision() + 1);

  std::atomic<bool> cancelled{false};
  std::string seen;
  absl::Status ended;
  std::thread watcher([&] {
    ended = client()->Watch(create, absl::Seconds(10), &cancelled,
                            [&](const etcdserverpb::WatchResponse& response) {
                              for (const mvccpb::Event& event : response.events()) {
                                if (event.type() == mvccpb::Event::PUT) {
                                  seen = event.kv().value();
                                  return false;
                                }
                              }
                              return true;
                            });
  });
  ASSERT_TRUE(client()->Put(PutOf("/t/watched", "hello")).ok());
  const absl::Time start = absl::Now();
  watcher.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(ended.ok()) << ended;
  EXPECT_EQ(seen, "hello");
}

TEST_F(EtcdClientTest, AQuietWatchEndsAtItsDeadline) {
  etcdserverpb::WatchCreateRequest create;
  create.set_key("/t/quiet");
  std::atomic<bool> cancelled{false};
  int responses = 0;
  const absl::Time start = absl::Now();
  const absl::Status ended = client()->Watch(create, absl::Milliseconds(300), &cancelled,
                                             [&](const etcdserverpb::WatchResponse& response) {
                                               ++responses;
                                               return true;
                                             });
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(ended.code(), absl::StatusCode::kDeadlineExceeded) << ended;
  EXPECT_LE(responses, 1) << "only the created notice";
}

TEST_F(EtcdClientTest, AWatchCancelledBetweenResponsesSaysSo) {
  etcdserverpb::WatchCreateRequest create;
  create.set_key("/t/quiet");
  std::atomic<bool> cancelled{false};
  const absl::Status ended = client()->Watch(create, absl::Seconds(10), &cancelled,
                                             [&](const etcdserverpb::WatchResponse& response) {
                                               cancelled = true;  // after the created notice
                                               return true;
                                             });
  EXPECT_EQ(ended.code(), absl::StatusCode::kCancelled) << ended;
}

TEST_F(EtcdClientQuorumTest, AWatchWhoseMemberDiesSaysSoAndTheNextOneMovesOn) {
  // The client prefers the first member, where the watch goes.
  ASSERT_TRUE(client()->Put(PutOf("/t/k", "v")).ok());
  etcdserverpb::WatchCreateRequest create;
  create.set_key("/t/watched");
  std::atomic<bool> cancelled{false};
  std::atomic<bool> created{false};
  absl::Status ended;
  std::thread watcher([&] {
    ended = client()->Watch(create, absl::Seconds(10), &cancelled,
                            [&](const etcdserverpb::WatchResponse& response) {
                              created = true;
                              return true;
                            });
  });
  ASSERT_TRUE(local_cluster::WaitFor([&] { return created.load(); }, absl::Seconds(5)));
  cluster().Kill(0);
  watcher.join();
  EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;

  // The next watch goes to a member that is up (the put through another
  // client leaves this one's choice of member to the watch) and sees a put.
  absl::StatusOr<etcdserverpb::PutResponse> put =
      NewClient(absl::Seconds(2))->Put(PutOf("/t/watched", "x"));
  ASSERT_TRUE(put.ok()) << put.status();
  create.set_start_revision(put->header().revision());
  std::string seen;
  ended = client()->Watch(create, absl::Seconds(5), &cancelled,
                          [&](const etcdserverpb::WatchResponse& response) {
                            if (response.events_size() == 0) return true;
                            seen = response.events(0).kv().value();
                            return false;
                          });
  EXPECT_TRUE(ended.ok()) << ended;
  EXPECT_EQ(seen, "x");
}

TEST_F(EtcdClientQuorumTest, CallsFailOverWhenTheMemberInUseDies) {
  // Every member is up, so the first call is answered by the first endpoint,
  // which the client then prefers.
  ASSERT_TRUE(client()->Put(PutOf("/t/k", "before")).ok());
  cluster().Kill(0);
  const absl::Time start = absl::Now();
  absl::StatusOr<etcdserverpb::PutResponse> put = client()->Put(PutOf("/t/k", "after"));
  ASSERT_TRUE(put.ok()) << put.status();
  absl::StatusOr<etcdserverpb::RangeResponse> range = client()->Range(RangeOf("/t/k"));
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "after");
  etcdserverpb::TxnRequest txn;
  *txn.add_success() = PutOp("/t/k", "txn");
  EXPECT_TRUE(client()->Txn(txn).ok());
  // The dead member costs a request timeout, and so may the next one while
  // the two left elect a new etcd leader (when the dead one led).
  EXPECT_LT(absl::Now() - start, client()->options().request_timeout * 3 + absl::Seconds(1));
}

TEST_F(EtcdClientQuorumTest, WithoutAQuorumCallsFailInBoundedTime) {
  constexpr absl::Duration kRequestTimeout = absl::Milliseconds(500);
  std::unique_ptr<EtcdClient> client = NewClient(kRequestTimeout);
  ASSERT_TRUE(client->Put(PutOf("/t/k", "v")).ok());
  cluster().Kill(0);
  cluster().Kill(1);

  // Each member costs at most one request timeout: a dead one in waiting
  // for its channel to connect, the one left in waiting for a quorum.
  const absl::Duration bound = kRequestTimeout * cluster().size() + absl::Seconds(1);
  absl::Time start = absl::Now();
  absl::StatusOr<etcdserverpb::RangeResponse> range = client->Range(RangeOf("/t/k"));
  EXPECT_LT(absl::Now() - start, bound);
  ASSERT_FALSE(range.ok());
  EXPECT_TRUE(Unreachable(range.status())) << range.status();

  start = absl::Now();
  absl::StatusOr<etcdserverpb::PutResponse> put = client->Put(PutOf("/t/k", "w"));
  EXPECT_LT(absl::Now() - start, bound);
  ASSERT_FALSE(put.ok());
  EXPECT_TRUE(Unreachable(put.status())) << put.status();

  start = absl::Now();
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = client->LeaseGrant(2);
  EXPECT_LT(absl::Now() - start, bound);
  ASSERT_FALSE(lease.ok());
  EXPECT_TRUE(Unreachable(lease.status())) << lease.status();

  // Once the members are back, calls succeed again.
  ASSERT_TRUE(cluster().Restart(0).ok());
  ASSERT_TRUE(cluster().Restart(1).ok());
  EXPECT_TRUE(local_cluster::WaitFor([&] { return client->Put(PutOf("/t/k", "back")).ok(); },
                                     absl::Seconds(15)));
  range = client->Range(RangeOf("/t/k"));
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "back");
}

}  // namespace
}  // namespace craft::server
