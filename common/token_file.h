// A bearer token kept in a file (never on a command line, where `ps` shows
// it): the planner reads its admin token this way, and clients read the one
// they send. One definition of what a token file may hold.
#ifndef CRAFT_COMMON_TOKEN_FILE_H_
#define CRAFT_COMMON_TOKEN_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace craft {

inline constexpr size_t kMaxTokenBytes = 4096;

// The token in `path`, without surrounding whitespace (what `echo t > file`
// leaves): 1 to kMaxTokenBytes printable characters without spaces.
// NOT_FOUND when unreadable, INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace craft

#endif  // CRAFT_COMMON_TOKEN_FILE_H_
