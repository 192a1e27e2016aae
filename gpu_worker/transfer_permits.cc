#include "gpu_worker/transfer_permits.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace craft::gpu_worker {

void TransferPermits::Grant(const craft::v1::Prepare& prepare) {
  const std::string& version = prepare.layout().version();
  std::map<Key, std::string> permits;
  for (const craft::v1::Transfer& t : prepare.transfers()) {
    if (t.src_gpu() != gpu_ || t.dst_gpu() == gpu_) continue;
    const auto node = prepare.gpu_nodes().find(t.dst_gpu());
    permits[Key{t.src_version(), t.layer(), t.src_slot(), t.expert(), t.dst_gpu()}] =
        node == prepare.gpu_nodes().end() ? "" : node->second;
  }
  absl::MutexLock lock(&mu_);
  if (by_version_.count(version) == 0) versions_.push_back(version);
  by_version_[version] = std::move(permits);
  while (versions_.size() > kVersionsKept) {
    by_version_.erase(versions_.front());
    versions_.pop_front();
  }
}

void TransferPermits::Revoke(const std::string& version) {
  absl::MutexLock lock(&mu_);
  by_version_.erase(version);
  versions_.erase(std::remove(versions_.begin(), versions_.end(), version), versions_.end());
}

absl::Status TransferPermits::Check(const craft::v1::FetchExpertRequest& request,
                                    const std::vector<std::string>& peer_names) const {
  const Key key{request.layout_version(), request.layer(), request.slot(), request.expert(),
                request.dst_gpu()};
  absl::MutexLock lock(&mu_);
  for (const auto& [version, permits] : by_version_) {
    const auto it = permits.find(key);
    if (it == permits.end()) continue;
    if (!check_identity_ ||
        std::find(peer_names.begin(), peer_names.end(), it->second) != peer_names.end()) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(
        absl::StrCat("gpu ", request.dst_gpu(), " is on node '", it->second,
                     "'; this peer's certificate does not name it (Prepare ", version, ")"));
  }
  return absl::UnavailableError(
      absl::StrCat("no Prepare received by gpu ", gpu_, " moves expert ", request.expert(),
                   " of layer ", request.layer(), " from slot ", request.slot(), " of ",
                   request.layout_version(), " to gpu ", request.dst_gpu(), " (yet)"));
}

}  // namespace craft::gpu_worker
