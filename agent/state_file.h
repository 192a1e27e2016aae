// What the agent must remember across restarts: the highest planner epoch it
// has seen (fencing must survive a restart, or a deposed planner could push to
// a freshly restarted agent) and the version its workers committed last.
//
// StateStore is the seam (LevelDB's Env idea): FileStateStore persists to a
// small text file written atomically; MemoryStateStore keeps it in memory
// (no --state_file, and tests).
#ifndef CRAFT_AGENT_STATE_FILE_H_
#define CRAFT_AGENT_STATE_FILE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace craft::agent {

struct AgentState {
  int64_t highest_epoch = 0;
  std::string committed_version;  // "" = none recorded

  bool operator==(const AgentState& other) const {
    return highest_epoch == other.highest_epoch && committed_version == other.committed_version;
  }
};

// The file format, one "key=value" per line:
//   highest_epoch=3
//   committed_version=3.17
// Unknown keys, a negative epoch or a malformed line are INVALID_ARGUMENT
// (the agent refuses to start rather than forget its fencing epoch).
std::string SerializeAgentState(const AgentState& state);
absl::StatusOr<AgentState> ParseAgentState(absl::string_view text);

// Thread-safe.
class StateStore {
 public:
  virtual ~StateStore() = default;
  // The saved state; a default AgentState when nothing was saved yet.
  virtual absl::StatusOr<AgentState> Load() = 0;
  virtual absl::Status Save(const AgentState& state) = 0;
};

class FileStateStore final : public StateStore {
 public:
  explicit FileStateStore(std::string path) : path_(std::move(path)) {}
  absl::StatusOr<AgentState> Load() override;
  // Write temp, fsync, rename (WriteFileAtomically).
  absl::Status Save(const AgentState& state) override;

 private:
  const std::string path_;
  absl::Mutex mu_;  // serialises writers of the temp file
};

class MemoryStateStore final : public StateStore {
 public:
  absl::StatusOr<AgentState> Load() override;
  absl::Status Save(const AgentState& state) override;

 private:
  absl::Mutex mu_;
  AgentState state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_STATE_FILE_H_
