#include "server/etcd/leader_election.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace craft::server {
namespace {

// Epochs stay far from overflow, as the state file's counters do.
constexpr int64_t kMaxEpoch = int64_t{1} << 62;
// A leader address longer than this is not one.
constexpr size_t kMaxAddressBytes = 256;

std::string Quoted(absl::string_view bytes) {
  return absl::StrCat("'", absl::CHexEscape(bytes.substr(0, 32)), bytes.size() > 32 ? "...'" : "'",
                      " (", bytes.size(), " bytes)");
}

}  // namespace

std::string LeaderKey(absl::string_view prefix) { return absl::StrCat(prefix, "/leader"); }
std::string EpochKey(absl::string_view prefix) { return absl::StrCat(prefix, "/epoch"); }
std::string StateKey(absl::string_view prefix) { return absl::StrCat(prefix, "/state"); }

LeaderElection::LeaderElection(EtcdClient* client, ElectionOptions options)
    : client_(client), options_(std::move(options)) {}

LeaderElection::~LeaderElection() { Stop(); }

void LeaderElection::SetOnLost(std::function<void(absl::string_view)> on_lost) {
  absl::MutexLock lock(&mu_);
  on_lost_ = std::move(on_lost);
}

bool LeaderElection::Leading() const {
  absl::MutexLock lock(&mu_);
  return leading_ && !lost_ && absl::Now() < lease_deadline_;
}

void LeaderElection::MarkLost(absl::string_view why) {
  std::function<void(absl::string_view)> on_lost;
  {
    absl::MutexLock lock(&mu_);
    if (!leading_ || lost_) return;
    lost_ = true;
    on_lost = on_lost_;
  }
  CRAFT_LOG(ERROR) << "lost leadership: " << why;
  if (on_lost) on_lost(why);
}

bool LeaderElection::SleepFor(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + duration;
  auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopped_; };
  mu_.AwaitWithDeadline(absl::Condition(&stopped), deadline);
  return !stopped_;
}

absl::StatusOr<int64_t> LeaderElection::EnsureLease() {
  {
    absl::MutexLock lock(&mu_);
    if (lease_id_ != 0 && absl::Now() < lease_deadline_) return lease_id_;
  }
  const absl::Time sent = absl::Now();
  const int64_t ttl_s = std::max<int64_t>(1, absl::ToInt64Seconds(options_.lease_ttl));
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> granted = client_->LeaseGrant(ttl_s);
  if (!granted.ok()) return granted.status();
  absl::MutexLock lock(&mu_);
  lease_id_ = granted->id();
  lease_deadline_ = sent + absl::Seconds(granted->ttl());
  if (!keep_alive_.joinable() && !stopped_) {
    keep_alive_ = std::thread([this] { KeepAliveLoop(); });
  }
  return lease_id_;
}

absl::StatusOr<std::optional<LeaderTerm>> LeaderElection::TryToLead(int64_t lease_id) {
  const std::string leader_key = LeaderKey(options_.prefix);
  const std::string epoch_key = EpochKey(options_.prefix);
  absl::StatusOr<etcdserverpb::RangeResponse> epoch_range = client_->Range(RangeOf(epoch_key));
  if (!epoch_range.ok()) return epoch_range.status();
  int64_t epoch = 0, epoch_mod_revision = 0;
  if (epoch_range->kvs_size() > 0) {
    const mvccpb::KeyValue& kv = epoch_range->kvs(0);
    epoch_mod_revision = kv.mod_revision();
    if (!absl::SimpleAtoi(kv.value(), &epoch) || epoch < 0 || epoch >= kMaxEpoch - 1) {
      return absl::DataLossError(absl::StrCat("etcd key ", epoch_key, " holds ", Quoted(kv.value()),
                                              ", not an epoch in [0, 2^62): fix or delete it"));
    }
  }
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = CreateRevisionIs(leader_key, 0);
  *txn.add_compare() = ModRevisionIs(epoch_key, epoch_mod_revision);
  *txn.add_success() = PutOp(leader_key, options_.address, lease_id);
  *txn.add_success() = PutOp(epoch_key, absl::StrCat(epoch + 1));
  *txn.add_failure() = RangeOp(leader_key);
  absl::StatusOr<etcdserverpb::TxnResponse> answer = client_->Txn(txn);
  if (!answer.ok()) return answer.status();
  if (answer->succeeded()) {
    return LeaderTerm{epoch + 1, answer->header().revision(), lease_id};
  }
  // Lost the race, or won it with a transaction whose answer was lost (the
  // leader key is on our lease): then the epoch key was written with it.
  if (answer->responses_size() == 1 && answer->responses(0).response_range().kvs_size() == 1) {
    const mvccpb::KeyValue& leader = answer->responses(0).response_range().kvs(0);
    if (leader.lease() == lease_id) {
      absl::StatusOr<etcdserverpb::RangeResponse> again = client_->Range(RangeOf(epoch_key));
      if (!again.ok()) return again.status();
      int64_t won_epoch = 0;
      if (again->kvs_size() == 1 && again->kvs(0).mod_revision() == leader.create_revision() &&
          absl::SimpleAtoi(again->kvs(0).value(), &won_epoch)) {
        return LeaderTerm{won_epoch, leader.create_revision(), lease_id};
      }
    }
  }
  return std::nullopt;
}

absl::StatusOr<LeaderTerm> LeaderElection::Campaign() {
  absl::Time last_logged = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::CancelledError("election stopped");
      // A won term would show as not leading (lost_ stays set) while the
      // keep-alive kept the leader key alive: nobody would lead.
      if (leading_ || lost_) {
        return absl::FailedPreconditionError(
            leading_ && !lost_ ? "already leading"
                               : "this election's leadership ended; campaign with a new one");
      }
    }
    absl::StatusOr<int64_t> lease = EnsureLease();
    absl::StatusOr<std::optional<LeaderTerm>> term =
        lease.ok() ? TryToLead(*lease) : absl::StatusOr<std::optional<LeaderTerm>>(lease.status());
    {
      absl::MutexLock lock(&mu_);
      last_campaign_error_ = term.status();
    }
    if (term.ok() && term->has_value()) {
      absl::MutexLock lock(&mu_);
      term_ = **term;
      leading_ = true;
      CRAFT_LOG(INFO) << "elected leader at " << options_.address << ": epoch " << term_.epoch
                      << ", leader key revision " << term_.leader_revision;
      return term_;
    }
    if (!term.ok() && absl::Now() - last_logged > absl::Seconds(5)) {
      CRAFT_LOG(WARNING) << "campaign: " << term.status().message() << " (retrying)";
      last_logged = absl::Now();
    }
    if (!SleepFor(term.ok() ? options_.poll_interval : options_.poll_interval * 5)) {
      return absl::CancelledError("election stopped");
    }
  }
}

void LeaderElection::KeepAliveLoop() {
  const absl::Duration interval = std::max(options_.lease_ttl / 3, absl::Milliseconds(100));
  while (SleepFor(interval)) {
    int64_t lease_id = 0;
    LeaderTerm term;
    bool leading = false;
    // A leader's calls end by its lease's deadline, however long the client
    // would try (request_timeout per member): leadership is lost then, and
    // the lost hook must not wait for a call that can no longer save it.
    absl::Time give_up = absl::InfiniteFuture();
    {
      absl::MutexLock lock(&mu_);
      lease_id = lease_id_;
      term = term_;
      leading = leading_ && !lost_;
      if (leading) give_up = lease_deadline_;
    }
    if (lease_id == 0) continue;
    const absl::Time sent = absl::Now();
    absl::StatusOr<int64_t> ttl = client_->LeaseKeepAliveOnce(lease_id, give_up);
    if (ttl.ok() && *ttl > 0) {
      absl::MutexLock lock(&mu_);
      if (lease_id_ == lease_id) lease_deadline_ = sent + absl::Seconds(*ttl);
    } else if (ttl.ok()) {
      {
        absl::MutexLock lock(&mu_);
        if (lease_id_ == lease_id) lease_id_ = 0;  // a follower grants a new one
      }
      if (leading) MarkLost("the lease expired");
      continue;
    } else {
      CRAFT_LOG(WARNING) << "lease keep-alive: " << ttl.status().message();
    }
    if (!leading) continue;
    {
      absl::MutexLock lock(&mu_);
      if (absl::Now() >= lease_deadline_) {
        lease_id_ = 0;
      }
      give_up = lease_deadline_;
    }
    if (!Leading()) {
      MarkLost("no lease renewal within the TTL (etcd unreachable or this process paused)");
      continue;
    }
    absl::StatusOr<etcdserverpb::RangeResponse> leader =
        client_->Range(RangeOf(LeaderKey(options_.prefix)), give_up);
    if (leader.ok() &&
        (leader->kvs_size() == 0 || leader->kvs(0).create_revision() != term.leader_revision)) {
      MarkLost(absl::StrCat("the leader key ", LeaderKey(options_.prefix),
                            leader->kvs_size() == 0 ? " was deleted" : " belongs to another term"));
    }
  }
}

absl::Status LeaderElection::LastCampaignError() const {
  absl::MutexLock lock(&mu_);
  return last_campaign_error_;
}

void LeaderElection::Resign() {
  int64_t lease_id = 0;
  {
    absl::MutexLock lock(&mu_);
    lease_id = lease_id_;
    lease_id_ = 0;
    lost_ = true;
  }
  if (lease_id == 0) return;
  if (absl::Status revoked = client_->LeaseRevoke(lease_id); !revoked.ok()) {
    CRAFT_LOG(WARNING) << "resign: " << revoked.message() << " (the lease expires on its own)";
  }
}

void LeaderElection::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (keep_alive_.joinable()) keep_alive_.join();
}

absl::StatusOr<std::string> LeaderElection::CurrentLeader() {
  absl::StatusOr<etcdserverpb::RangeResponse> leader =
      client_->Range(RangeOf(LeaderKey(options_.prefix)));
  if (!leader.ok()) return leader.status();
  if (leader->kvs_size() == 0) return std::string();
  const std::string& address = leader->kvs(0).value();
  if (address.empty() || address.size() > kMaxAddressBytes) {
    return absl::DataLossError(absl::StrCat("etcd key ", LeaderKey(options_.prefix), " holds ",
                                            Quoted(address), ", not a planner address"));
  }
  return address;
}

}  // namespace craft::server
