#include "server/etcd/etcd_state_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace craft::server {

absl::StatusOr<std::optional<PlannerState>> ReadEtcdState(EtcdClient* client,
                                                          absl::string_view key) {
  absl::StatusOr<etcdserverpb::RangeResponse> range = client->Range(RangeOf(std::string(key)));
  if (!range.ok()) return range.status();
  if (range->kvs_size() == 0) return std::nullopt;
  const std::string& value = range->kvs(0).value();
  if (value.size() > kMaxStateValueBytes) {
    return absl::DataLossError(absl::StrCat("etcd key ", key, " holds ", value.size(),
                                            " bytes, over the ", kMaxStateValueBytes,
                                            "-byte bound of a planner state"));
  }
  CRAFT_ASSIGN_OR_RETURN(PlannerState state,
                         DecodePlannerState(value, absl::StrCat("etcd key ", key)));
  return state;
}

EtcdStateStore::EtcdStateStore(LeaderElection* election, LeaderTerm term, std::string key)
    : election_(election),
      term_(term),
      key_(key.empty() ? StateKey(election->options().prefix) : std::move(key)) {}

absl::StatusOr<std::optional<PlannerState>> EtcdStateStore::Load() {
  return ReadEtcdState(election_->client(), key_);
}

absl::Status EtcdStateStore::Save(const PlannerState& state) {
  CRAFT_ASSIGN_OR_RETURN(std::string encoded, EncodePlannerState(state));
  absl::MutexLock lock(&mu_);
  if (!election_->Leading()) {
    return absl::FailedPreconditionError("not the leader: refusing to write the planner state");
  }
  const std::string& prefix = election_->options().prefix;
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = CreateRevisionIs(LeaderKey(prefix), term_.leader_revision);
  *txn.add_success() = PutOp(key_, encoded);
  absl::StatusOr<etcdserverpb::TxnResponse> answer = election_->client()->Txn(txn);
  if (!answer.ok()) return absl::UnavailableError(answer.status().message());
  if (!answer->succeeded()) {
    election_->MarkLost("a guarded write found the leader key changed");
    return absl::FailedPreconditionError(
        absl::StrCat("deposed: ", LeaderKey(prefix), " is no longer the one created at revision ",
                     term_.leader_revision, " (epoch ", term_.epoch, "); the write was refused"));
  }
  last_saved_ = std::move(encoded);
  return absl::OkStatus();
}

void EtcdStateStore::RepairIfDeleted() {
  const std::string& prefix = election_->options().prefix;
  absl::StatusOr<etcdserverpb::RangeResponse> range = [&] {
    etcdserverpb::RangeRequest request = RangeOf(key_);
    request.set_count_only(true);
    return election_->client()->Range(request);
  }();
  if (!range.ok() || range->count() > 0) return;
  absl::MutexLock lock(&mu_);
  if (!last_saved_.has_value() || !election_->Leading()) return;
  CRAFT_LOG(ERROR) << "etcd key " << key_
                   << " was deleted under the leader; writing the committed state back";
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = CreateRevisionIs(LeaderKey(prefix), term_.leader_revision);
  *txn.add_success() = PutOp(key_, *last_saved_);
  absl::StatusOr<etcdserverpb::TxnResponse> answer = election_->client()->Txn(txn);
  if (answer.ok() && !answer->succeeded()) {
    election_->MarkLost("a guarded write found the leader key changed");
  }
}

}  // namespace craft::server
