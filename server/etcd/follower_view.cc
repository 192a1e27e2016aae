#include "server/etcd/follower_view.h"

#include <utility>

#include "common/logging.h"
#include "server/etcd/etcd_state_store.h"

namespace craft::server {

FollowerView::FollowerView(LeaderElection* election, std::map<std::string, std::string> state_keys,
                           OnState on_state, OnLeader on_leader, absl::Duration refresh)
    : election_(election),
      state_keys_(std::move(state_keys)),
      on_state_(std::move(on_state)),
      on_leader_(std::move(on_leader)),
      refresh_(refresh) {}

FollowerView::~FollowerView() { Stop(); }

void FollowerView::Start() {
  thread_ = std::thread([this] { Run(); });
}

void FollowerView::Stop() {
  stopped_.store(true);
  if (thread_.joinable()) thread_.join();
}

void FollowerView::Refresh() {
  const auto log_error = [&](const absl::Status& status) {
    if (absl::Now() - last_logged_ < absl::Seconds(10)) return;
    last_logged_ = absl::Now();
    CRAFT_LOG(WARNING) << "follower view: " << status.message();
  };
  absl::StatusOr<std::string> leader = election_->CurrentLeader();
  if (leader.ok()) {
    on_leader_(*leader);
  } else {
    // Unreachable etcd or garbage in the key: this follower cannot vouch
    // for any leader (readiness goes NOT_SERVING), though it keeps serving
    // reads of the committed state it last read.
    on_leader_("");
    log_error(leader.status());
  }
  for (const auto& [group, key] : state_keys_) {
    absl::StatusOr<std::optional<PlannerState>> state = ReadEtcdState(election_->client(), key);
    if (!state.ok()) {
      log_error(state.status());
      continue;
    }
    if (!state->has_value()) continue;
    const PlannerState& read = **state;
    std::pair<std::string, int64_t> handed{read.committed.version(), read.epoch};
    auto [it, first] = last_handed_.emplace(group, handed);
    if (!first && it->second == handed) continue;
    it->second = std::move(handed);
    on_state_(group, read);
  }
}

void FollowerView::Run() {
  const std::string prefix = election_->options().prefix + "/";
  etcdserverpb::WatchCreateRequest watch;
  watch.set_key(prefix);
  std::string range_end = prefix;
  range_end.back() = static_cast<char>(range_end.back() + 1);  // every key under the prefix
  watch.set_range_end(range_end);
  while (!stopped_.load()) {
    Refresh();
    // Until something under the prefix changes, or `refresh_` passes (a
    // change between the read and the watch is caught then).
    const absl::Time started = absl::Now();
    absl::Status watched =
        election_->client()->Watch(watch, refresh_, &stopped_, [](const auto& response) {
          return response.events_size() == 0;  // the creation answer: keep waiting
        });
    if (!watched.ok() && !stopped_.load() && absl::Now() - started < absl::Milliseconds(100)) {
      absl::SleepFor(absl::Milliseconds(200));  // etcd unreachable: do not spin
    }
  }
}

}  // namespace craft::server
