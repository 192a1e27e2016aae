#include "common/token_file.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_io.h"

namespace craft {

namespace {

// Room for the token and any whitespace around it; a larger file is not a
// token file (a key, a log), refused before it is read into memory.
constexpr int64_t kMaxTokenFileBytes = 64 << 10;

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path, kMaxTokenFileBytes);
  if (absl::IsResourceExhausted(text.status())) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", text.status().message()));
  }
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("token file ", path, ": cannot be read"));
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty() || token.size() > kMaxTokenBytes ||
      std::any_of(token.begin(), token.end(), [](char c) { return c < 0x21 || c > 0x7e; })) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": the token must be 1 to ",
                                                   kMaxTokenBytes,
                                                   " printable characters without spaces"));
  }
  return token;
}

}  // namespace craft
