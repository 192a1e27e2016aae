// Reading a whole file into memory: the one way the codebase does it.
#ifndef CRAFT_COMMON_FILE_IO_H_
#define CRAFT_COMMON_FILE_IO_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/base/attributes.h"
#include "absl/status/statusor.h"

namespace craft {

// The bytes of `path` from `offset` on (an offset past the end gives ""),
// read with open(2)/read(2) into a string sized once from fstat(2): no
// stream buffer copying the text twice. Reads to end of file rather than to
// the stat size, so a file that grows or shrinks meanwhile (a log being
// written) still reads; pipes and /proc files, whose stat size is 0, too.
//
// `max_bytes` bounds what is returned: RESOURCE_EXHAUSTED "PATH is N bytes,
// more than the limit of M", checked on the stat size before allocating and
// again while reading. Other errors carry "PATH: strerror": NOT_FOUND for
// ENOENT and nothing else, PERMISSION_DENIED for EACCES, FAILED_PRECONDITION for a directory,
// DATA_LOSS for a failed read, the errno's usual code otherwise.
// Thread-safe.
//
//   absl::StatusOr<std::string> text = ReadFileToString(path, 16 << 20);
//   if (absl::IsNotFound(text.status())) ...  // e.g. a first start
ABSL_MUST_USE_RESULT absl::StatusOr<std::string> ReadFileToString(
    const std::string& path, int64_t max_bytes = std::numeric_limits<int64_t>::max(),
    int64_t offset = 0);

}  // namespace craft

#endif  // CRAFT_COMMON_FILE_IO_H_
