// Crash-safe file replacement: readers see the old content or the new one,
// never a torn file.
#ifndef CRAFT_COMMON_ATOMIC_FILE_H_
#define CRAFT_COMMON_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace craft {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory (an unopenable directory is skipped:
// some filesystems refuse it; a failing fsync of it is an error). Thread-compatible: concurrent
// writers of one path must be serialised by the caller.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

}  // namespace craft

#endif  // CRAFT_COMMON_ATOMIC_FILE_H_
