// Named crash points, for crash-consistency tests of real processes (the
// failpoints of etcd's gofail, reduced to the one action those tests need).
//
// Code marks the moments whose crash matters:
//
//   CRAFT_CRASH_POINT("planner.commit_persisted");
//
// A point does nothing unless the environment variable CRAFT_CRASH_POINTS_FILE
// names a file when the process starts. Then every time a point is reached the
// file is read; when its first line is
//
//   <point name> [hit=N] [delay_ms=D]
//
// and this is the N-th time (default 1) that the point is reached since the
// line was written, the process waits D ms (default 0: other threads keep
// running meanwhile, so a message being written may or may not leave), logs
// "crash point <name> reached" to stderr and kills itself with SIGKILL: no
// destructor, flush or graceful shutdown runs, as in a power cut or the OOM
// killer. The file is emptied first, so a restarted process with the same
// environment does not crash again at once.
//
// Cost when not armed: one relaxed atomic load. Points are reached at
// protocol steps (a prepare, a commit), never per token, so the file read
// when armed is cheap too.
//
// Thread-safe.
#ifndef CRAFT_COMMON_CRASH_POINT_H_
#define CRAFT_COMMON_CRASH_POINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace craft {

// One armed crash point: the content of the control file.
struct CrashSpec {
  std::string point;
  int hit = 1;       // crash on the hit-th time the point is reached
  int delay_ms = 0;  // wait this long before the kill
};

// Parses "<point> [hit=N] [delay_ms=D]". An empty line is NOT_FOUND (nothing
// armed); anything else malformed is INVALID_ARGUMENT.
absl::StatusOr<CrashSpec> ParseCrashSpec(absl::string_view line);

// Reaches crash point `name`: see the file comment. Never returns when the
// point is armed and due.
void ReachCrashPoint(absl::string_view name);

}  // namespace craft

#define CRAFT_CRASH_POINT(name) ::craft::ReachCrashPoint(name)

#endif  // CRAFT_COMMON_CRASH_POINT_H_
