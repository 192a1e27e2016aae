// What the agent must remember across restarts: the highest planner epoch it
// has seen (fencing must survive a restart, or a deposed planner could push to
// a freshly restarted agent), the version the node committed last and that
// version's layout (written when the Commit arrives, before any worker flips,
// so that after a crash anywhere in the flip the agent brings every worker to
// it: proto/README.md, "Recovery"), and the model shape the planner stated
// (a restarted agent without model flags knows it before the planner is back,
// so its workers can attach).
//
// StateStore is the seam (LevelDB's Env idea): FileStateStore persists to a
// small text file written atomically; MemoryStateStore keeps it in memory
// (no --state_file, and tests).
#ifndef CRAFT_AGENT_STATE_FILE_H_
#define CRAFT_AGENT_STATE_FILE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/layout.pb.h"

namespace craft::agent {

struct AgentState {
  int64_t highest_epoch = 0;
  std::string committed_version;  // "" = none recorded
  // The layout of committed_version; unset when not known (a state written
  // before layouts were kept, or none committed).
  std::optional<craft::v1::Layout> committed_layout;
  // The model shape of the planner's last Welcome; unset when none came (or
  // in a state written before it was kept).
  std::optional<craft::v1::ModelShape> model;

  bool operator==(const AgentState& other) const;
};

// The file format, one "key=value" per line:
//   highest_epoch=3
//   committed_version=3.17
//   committed_layout=<base64 of the serialized craft.v1.Layout>   (optional)
//   model=<num_layers>,<num_experts>,<top_k>,<bytes_per_expert>  (optional)
// Unknown keys, a negative epoch, a layout that does not parse or names
// another version than committed_version, a model that is not four integers
// (positive counts, non-negative top_k and bytes), or a malformed line are
// INVALID_ARGUMENT (the agent refuses to start rather than forget its fencing
// epoch or serve a layout it cannot trust).
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
