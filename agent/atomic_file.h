// Crash-safe file replacement: readers see the old content or the new one,
// never a torn file.
#ifndef CRAFT_AGENT_ATOMIC_FILE_H_
#define CRAFT_AGENT_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace craft::agent {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory. Thread-compatible: concurrent writers
// of one path must be serialised by the caller.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

}  // namespace craft::agent

#endif  // CRAFT_AGENT_ATOMIC_FILE_H_
