// Where a file the build put beside a binary (another binary, a script) lies
// at run time: in the runfiles tree of the test or binary that depends on it.
//
//   std::string planner = Runfile("server/craft-planner");
#ifndef CRAFT_COMMON_RUNFILES_H_
#define CRAFT_COMMON_RUNFILES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace craft {

// `path` (relative to the workspace root) under the first runfiles tree
// found: $TEST_SRCDIR (a test), $RUNFILES_DIR (`bazel run`), then
// <this executable>.runfiles (a binary run from bazel-bin). Without one (a
// binary copied out of bazel-bin), `path` itself, relative to the working
// directory: scripts run from the repository root. Thread-safe.
std::string Runfile(absl::string_view path);

}  // namespace craft

#endif  // CRAFT_COMMON_RUNFILES_H_
