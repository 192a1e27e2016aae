#include "server/leader_directory.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace craft::server {

std::string LeaderDirectory::Get() const {
  absl::MutexLock lock(&mu_);
  return address_;
}

void LeaderDirectory::Set(std::string address) {
  std::function<void(const std::string&)> on_change;
  {
    absl::MutexLock lock(&mu_);
    if (address == address_) return;
    address_ = address;
    on_change = on_change_;
  }
  if (on_change) on_change(address);
}

void LeaderDirectory::SetOnChange(std::function<void(const std::string&)> on_change) {
  absl::MutexLock lock(&mu_);
  on_change_ = std::move(on_change);
}

grpc::Status NotLeader(grpc::CallbackServerContext* context, const std::string& leader) {
  // Present even when empty: "a follower, ask again soon" (agents poll it).
  context->AddTrailingMetadata(kLeaderMetadataKey, leader);
  if (leader.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "not the leader, and no leader is elected yet; retry shortly");
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat("not the leader; the leader is at ", leader));
}

}  // namespace craft::server
