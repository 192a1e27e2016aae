#include "server/ha_planner.h"

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/etcd/etcd_client.h"
#include "server/etcd/etcd_state_store.h"
#include "server/etcd/follower_view.h"
#include "server/leader_directory.h"
#include "server/placement_service.h"
#include "wire/layout_proto.h"

namespace craft::server {
namespace {

EtcdClientOptions ClientOptions(const HaConfig& ha) {
  EtcdClientOptions options;
  options.endpoints = ha.etcd_endpoints;
  options.security.insecure = ha.etcd_insecure;
  options.security.cert_file = ha.etcd_cert_file;
  options.security.key_file = ha.etcd_key_file;
  options.security.ca_file = ha.etcd_ca_file;
  options.server_name = ha.etcd_server_name;
  options.request_timeout = ha.etcd_timeout;
  return options;
}

}  // namespace

HaPlanner::HaPlanner(PlannerConfig config, ServerOptions options, std::string advertise_address,
                     Hooks hooks)
    : config_(std::move(config)),
      options_(std::move(options)),
      advertise_address_(std::move(advertise_address)),
      hooks_(std::move(hooks)) {}

void HaPlanner::RequestStop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
  if (election_ != nullptr) election_->Stop();  // unblocks Campaign
}

absl::Status HaPlanner::Run() {
  const EtcdClientOptions client_options = ClientOptions(config_.ha);
  if (!client_options.security.insecure) {
    if (absl::Status valid = ValidateTransportSecurity(client_options.security); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("etcd TLS: ", valid.message()));
    }
  }
  EtcdClient client(client_options);
  const ElectionOptions election_options{config_.ha.prefix, advertise_address_,
                                         config_.ha.lease_ttl};
  std::map<std::string, std::string> state_keys;  // by placement group
  for (const PlacementGroup& group : EffectiveGroups(config_)) {
    state_keys[group.name] = GroupStateName(config_, StateKey(config_.ha.prefix), group.name);
  }
  while (true) {
    LeaderElection election(&client, election_options);
    LeaderDirectory directory;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      election_ = &election;
      lost_ = false;
    }
    election.SetOnLost([this](absl::string_view) {
      absl::MutexLock lock(&mu_);
      lost_ = true;
    });

    // Follow while campaigning.
    absl::StatusOr<LeaderTerm> term;
    {
      ServerOptions follower_options = options_;
      follower_options.follower = true;
      follower_options.directory = &directory;
      absl::StatusOr<std::unique_ptr<PlannerServer>> started =
          PlannerServer::Start(config_, follower_options);
      if (!started.ok()) {
        absl::MutexLock lock(&mu_);
        election_ = nullptr;
        return started.status();
      }
      std::unique_ptr<PlannerServer> follower = *std::move(started);
      PlannerServer* serving = follower.get();
      directory.SetOnChange(
          [serving](const std::string& leader) { serving->SetServing(!leader.empty()); });
      if (hooks_.on_started) hooks_.on_started(serving, /*leader=*/false);
      PlacementServiceImpl* placement = serving->placement();
      FollowerView view(
          &election, state_keys,
          [placement](const std::string& group, const PlannerState& state) {
            absl::StatusOr<planner::Layout> layout = LayoutFromProto(state.committed);
            if (!layout.ok()) {
              CRAFT_LOG(WARNING) << "the committed layout in etcd does not parse: "
                                 << layout.status().message();
              return;
            }
            placement->PublishCommit(
                group,
                CommittedLayout{state.committed.version(),
                                std::make_shared<const planner::Layout>(*std::move(layout))},
                state.epoch);
          },
          [&directory](const std::string& leader) { directory.Set(leader); });
      view.Start();
      term = election.Campaign();
      view.Stop();
      directory.SetOnChange(nullptr);  // the follower goes away
      if (hooks_.on_stopping) hooks_.on_stopping(serving);
      follower->Shutdown();
    }
    if (!term.ok()) {  // stopped
      absl::MutexLock lock(&mu_);
      election_ = nullptr;
      break;
    }

    // Lead.
    // One store per placement group, each at its own key.
    std::vector<std::unique_ptr<EtcdStateStore>> stores;
    ServerOptions leader_options = options_;
    for (const auto& [group, key] : state_keys) {
      stores.push_back(std::make_unique<EtcdStateStore>(&election, *term, key));
      leader_options.group_state_stores[group] = stores.back().get();
    }
    leader_options.epoch = term->epoch;
    leader_options.may_push = [&election] { return election.Leading(); };
    leader_options.directory = &directory;
    directory.Set(advertise_address_);
    absl::StatusOr<std::unique_ptr<PlannerServer>> leader =
        PlannerServer::Start(config_, leader_options);
    if (!leader.ok()) {
      CRAFT_LOG(ERROR) << "cannot lead (epoch " << term->epoch << "): " << leader.status().message()
                       << "; resigning";
      election.Resign();
      absl::SleepFor(config_.ha.lease_ttl);  // let another replica try
    } else {
      if (hooks_.on_started) hooks_.on_started(leader->get(), /*leader=*/true);
      absl::MutexLock lock(&mu_);
      auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || lost_; };
      while (!mu_.AwaitWithTimeout(absl::Condition(&done), config_.ha.lease_ttl / 3)) {
        mu_.Unlock();
        for (const std::unique_ptr<EtcdStateStore>& store : stores) store->RepairIfDeleted();
        mu_.Lock();
      }
    }
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      stopping = stop_;
      election_ = nullptr;
    }
    if (leader.ok()) {
      if (hooks_.on_stopping) hooks_.on_stopping(leader->get());
      (*leader)->Shutdown();
    }
    if (stopping) {
      election.Resign();  // a follower takes over without waiting for the TTL
      break;
    }
    CRAFT_LOG(WARNING) << "following again after epoch " << term->epoch;
  }
  return absl::OkStatus();
}

}  // namespace craft::server
