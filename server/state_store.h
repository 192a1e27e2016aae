// What the planner persists across restarts (docs/design.md §5): the committed
// layout, the version counter and the epoch. Behind an interface so tests use
// memory and another backend (etcd) can replace the file.
//
//   FileStateStore store("/var/lib/craft/planner.state");
//   CRAFT_ASSIGN_OR_RETURN(std::optional<PlannerState> state, store.Load());
//   state->epoch += 1;
//   CRAFT_RETURN_IF_ERROR(store.Save(*state));
//
// Thread-safety: implementations are thread-safe; Save is atomic (a reader or
// a crash sees the old state or the new one, never a mix).
#ifndef CRAFT_SERVER_STATE_STORE_H_
#define CRAFT_SERVER_STATE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "craft/v1/layout.pb.h"

namespace craft::server {

struct PlannerState {
  int64_t epoch = 0;            // the leadership term of the planner that saved it
  int64_t seq = 0;              // the version counter: the last seq minted when saved
  craft::v1::Layout committed;  // committed.version() is the committed version
  // The layout committed before, which agents may still serve when the
  // planner stopped between the commit point and their Ack{COMMITTED}: kept
  // so that a restarted planner can still source their weights.
  std::optional<craft::v1::Layout> previous;
};

// The state's bytes, as every backend stores them: a text header (magic with
// the schema version, epoch, seq, the length and FNV-1a checksum of each
// serialized craft.v1.Layout, then the FNV-1a checksum of those header
// lines) followed by the committed and the previous layout's bytes. Decode
// refuses (DATA_LOSS, naming `source`) an unknown schema version, a header
// that does not match its checksum, counters outside [0, 2^62) (epoch from
// 1), and layout versions later than the counters (the next apply would mint
// them again); Encode refuses (INVALID_ARGUMENT) to write such a state.
absl::StatusOr<PlannerState> DecodePlannerState(absl::string_view bytes, absl::string_view source);
absl::StatusOr<std::string> EncodePlannerState(const PlannerState& state);

class StateStore {
 public:
  virtual ~StateStore() = default;
  // Nullopt when nothing was saved yet; DATA_LOSS when what is there cannot
  // be read back (never silently reset: that could reuse versions).
  virtual absl::StatusOr<std::optional<PlannerState>> Load() = 0;
  virtual absl::Status Save(const PlannerState& state) = 0;
};

// The state encoded as above, in a file written as a temporary file,
// fsync'ed and renamed over `path` (then the directory fsync'ed).
class FileStateStore : public StateStore {
 public:
  explicit FileStateStore(std::string path) : path_(std::move(path)) {}
  absl::StatusOr<std::optional<PlannerState>> Load() override;
  absl::Status Save(const PlannerState& state) override;

 private:
  const std::string path_;
  absl::Mutex mu_;  // serialises writers of the temporary file
};

// For tests: keeps the state in memory; can be told to fail saves.
class InMemoryStateStore : public StateStore {
 public:
  absl::StatusOr<std::optional<PlannerState>> Load() override;
  absl::Status Save(const PlannerState& state) override;

  void set_fail_saves(bool fail);
  int saves() const;

 private:
  mutable absl::Mutex mu_;
  std::optional<PlannerState> state_ ABSL_GUARDED_BY(mu_);
  bool fail_saves_ ABSL_GUARDED_BY(mu_) = false;
  int saves_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_STATE_STORE_H_
