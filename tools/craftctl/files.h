// craftctl's files: reading traces and layouts with errors that name the
// file, and writing output atomically. Also used by craft-evaluate.
#ifndef CRAFT_TOOLS_CRAFTCTL_FILES_H_
#define CRAFT_TOOLS_CRAFTCTL_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "planner/layout.h"
#include "planner/load_trace.h"

namespace craft::ctl {

absl::StatusOr<std::string> ReadFile(const std::string& path);
// Writes `text` to `path` ("-" = stdout) with WriteFileAtomically,
// so a reader never sees half a layout.
absl::Status WriteFile(const std::string& path, const std::string& text);

// Reads and validates a trace file (aggregate counts or craft's own format).
absl::StatusOr<planner::LoadTrace> LoadTraceFile(const std::string& path);
absl::StatusOr<planner::Layout> LoadLayoutFile(const std::string& path);

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_FILES_H_
