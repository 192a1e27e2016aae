// The layouts the planner can still interpret, by version: the committed one,
// the initial layout "0.0" and a few recently committed ones. Load windows
// are recorded per slot under a version and mean nothing without that
// version's layout; transfer sources are slots of the version a GPU serves.
//
//   LayoutHistory history(/*capacity=*/8);
//   history.Add("3.7", layout);
//   std::shared_ptr<const planner::Layout> l = history.Find("3.7");
//
// Thread-safety: all methods are thread-safe. Layouts are immutable once
// added and shared, so a caller may keep one after it is evicted.
#ifndef CRAFT_SERVER_LAYOUT_HISTORY_H_
#define CRAFT_SERVER_LAYOUT_HISTORY_H_

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "planner/layout.h"

namespace craft::server {

class LayoutHistory {
 public:
  // Keeps at most `capacity` versions besides the pinned ones.
  explicit LayoutHistory(int capacity) : capacity_(capacity) {}

  // Adds (or replaces) `version`, evicting the oldest unpinned versions
  // beyond capacity. The initial layout "0.0" and the committed version are
  // pinned: never evicted.
  void Add(const std::string& version, std::shared_ptr<const planner::Layout> layout);
  // Adds `version` and pins it as the committed one (unpinning the previous
  // committed version, which stays until evicted).
  void AddCommitted(const std::string& version, std::shared_ptr<const planner::Layout> layout);

  // nullptr when `version` is unknown; "" is the initial version
  // (VersionOrInitial).
  std::shared_ptr<const planner::Layout> Find(absl::string_view version) const;

 private:
  void AddLocked(const std::string& version, std::shared_ptr<const planner::Layout> layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PinnedLocked(const std::string& version) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int capacity_;
  mutable absl::Mutex mu_;
  // Oldest first.
  std::deque<std::pair<std::string, std::shared_ptr<const planner::Layout>>> entries_
      ABSL_GUARDED_BY(mu_);
  std::string committed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_LAYOUT_HISTORY_H_
