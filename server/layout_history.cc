#include "server/layout_history.h"

#include "wire/version.h"

namespace craft::server {

void LayoutHistory::Add(const std::string& version, std::shared_ptr<const planner::Layout> layout) {
  absl::MutexLock lock(&mu_);
  AddLocked(version, std::move(layout));
}

void LayoutHistory::AddCommitted(const std::string& version,
                                 std::shared_ptr<const planner::Layout> layout) {
  absl::MutexLock lock(&mu_);
  committed_ = version;
  AddLocked(version, std::move(layout));
}

bool LayoutHistory::PinnedLocked(const std::string& version) const {
  return version == committed_ || version == kInitialVersion;
}

void LayoutHistory::AddLocked(const std::string& version,
                              std::shared_ptr<const planner::Layout> layout) {
  for (auto& entry : entries_) {
    if (entry.first == version) {
      entry.second = std::move(layout);
      return;
    }
  }
  entries_.emplace_back(version, std::move(layout));
  int unpinned = 0;
  for (const auto& entry : entries_) unpinned += PinnedLocked(entry.first) ? 0 : 1;
  // Oldest first: the front holds the versions least likely to be served.
  for (auto it = entries_.begin(); unpinned > capacity_ && it != entries_.end();) {
    if (PinnedLocked(it->first)) {
      ++it;
    } else {
      it = entries_.erase(it);
      --unpinned;
    }
  }
}

std::shared_ptr<const planner::Layout> LayoutHistory::Find(absl::string_view version) const {
  const std::string canonical = VersionOrInitial(version);
  absl::MutexLock lock(&mu_);
  for (const auto& entry : entries_) {
    if (entry.first == canonical) return entry.second;
  }
  return nullptr;
}

}  // namespace craft::server
