// A GoogleTest fixture for the high-availability tests: a real etcd cluster
// of `kMembers` members on loopback (tests/integration/etcd_cluster.h) and a
// client on all of them. The test is skipped when there is no etcd binary.
//
//   using EtcdOneMemberTest = EtcdTest<1>;
//   TEST_F(EtcdOneMemberTest, Something) { client()->Put(...); }
//
// Also: key helpers, a recorder for the on-lost hook, election options that
// make the tests fast, and a Campaign() on a thread of its own.
#ifndef CRAFT_SERVER_ETCD_ETCD_TEST_FIXTURE_H_
#define CRAFT_SERVER_ETCD_ETCD_TEST_FIXTURE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/etcd/etcd_client.h"
#include "server/etcd/leader_election.h"
#include "tests/integration/etcd_cluster.h"
#include "tools/local_cluster/process.h"

namespace craft::server {

template <int kMembers>
class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (craft::testing::EtcdBinary().empty()) GTEST_SKIP() << "no etcd binary (set CRAFT_ETCD)";
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    cluster_ = std::make_unique<craft::testing::EtcdCluster>(
        kMembers, local_cluster::TempDir(absl::StrCat(test->test_suite_name(), ".", test->name())));
    const absl::Status started = cluster_->Start();
    ASSERT_TRUE(started.ok()) << started;
    client_ = NewClient(absl::Seconds(2));
  }

  // Another client on every member, with its own failover state.
  std::unique_ptr<EtcdClient> NewClient(absl::Duration request_timeout) const {
    EtcdClientOptions options;
    options.endpoints = cluster_->endpoints();
    options.security.insecure = true;
    options.request_timeout = request_timeout;
    return std::make_unique<EtcdClient>(std::move(options));
  }

  craft::testing::EtcdCluster& cluster() { return *cluster_; }
  EtcdClient* client() { return client_.get(); }

 private:
  std::unique_ptr<craft::testing::EtcdCluster> cluster_;
  std::unique_ptr<EtcdClient> client_;
};

// The on-lost hook's calls.
class LostHook {
 public:
  std::function<void(absl::string_view)> Hook() {
    return [this](absl::string_view why) {
      absl::MutexLock lock(&mu_);
      ++calls_;
      why_ = std::string(why);
      at_ = absl::Now();
    };
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string why() const {
    absl::MutexLock lock(&mu_);
    return why_;
  }
  absl::Time at() const {
    absl::MutexLock lock(&mu_);
    return at_;
  }

 private:
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string why_ ABSL_GUARDED_BY(mu_);
  absl::Time at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The key-value at `key`, or nullopt when absent (or unreadable: the
// test fails).
inline std::optional<mvccpb::KeyValue> GetKey(EtcdClient* client, const std::string& key) {
  absl::StatusOr<etcdserverpb::RangeResponse> range = client->Range(RangeOf(key));
  EXPECT_TRUE(range.ok()) << range.status();
  if (!range.ok() || range->kvs_size() == 0) return std::nullopt;
  return range->kvs(0);
}

inline void PutKey(EtcdClient* client, const std::string& key, const std::string& value) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  absl::StatusOr<etcdserverpb::PutResponse> put = client->Put(request);
  ASSERT_TRUE(put.ok()) << put.status();
}

inline void DeleteKey(EtcdClient* client, const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> deleted = client->DeleteRange(request);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
}

// Every test's keys live under this prefix.
inline constexpr char kTestPrefix[] = "/craft/test";

// Short leases and fast polls: a handover takes a fraction of a second, an
// expiry about `lease_ttl`.
inline ElectionOptions FastElection(std::string address,
                                    absl::Duration lease_ttl = absl::Seconds(1)) {
  ElectionOptions options;
  options.prefix = kTestPrefix;
  options.address = std::move(address);
  options.lease_ttl = lease_ttl;
  options.poll_interval = absl::Milliseconds(50);
  return options;
}

// election->Campaign() on a thread of its own. `on_done` runs on that thread
// as soon as Campaign returns (to observe other elections at that moment).
// The destructor stops the election (a campaign still blocked returns) and
// joins.
class BackgroundCampaign {
 public:
  explicit BackgroundCampaign(LeaderElection* election, std::function<void()> on_done = nullptr)
      : election_(election), thread_([this, on_done = std::move(on_done)] {
          absl::StatusOr<LeaderTerm> term = election_->Campaign();
          const absl::Time done_at = absl::Now();
          if (on_done) on_done();
          absl::MutexLock lock(&mu_);
          result_ = std::move(term);
          done_at_ = done_at;
        }) {}
  BackgroundCampaign(const BackgroundCampaign&) = delete;
  BackgroundCampaign& operator=(const BackgroundCampaign&) = delete;
  ~BackgroundCampaign() {
    election_->Stop();
    thread_.join();
  }

  bool Done() const {
    absl::MutexLock lock(&mu_);
    return result_.has_value();
  }
  // Campaign's answer, once it returned within `timeout`; nullopt otherwise.
  std::optional<absl::StatusOr<LeaderTerm>> Wait(absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return result_.has_value(); };
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    return result_;
  }
  // When Campaign returned (InfinitePast before).
  absl::Time done_at() const {
    absl::MutexLock lock(&mu_);
    return done_at_;
  }

 private:
  LeaderElection* const election_;
  mutable absl::Mutex mu_;
  std::optional<absl::StatusOr<LeaderTerm>> result_ ABSL_GUARDED_BY(mu_);
  absl::Time done_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_ETCD_ETCD_TEST_FIXTURE_H_
