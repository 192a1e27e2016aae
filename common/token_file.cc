#include "common/token_file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace craft {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("token file ", path, ": cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty() || token.size() > kMaxTokenBytes ||
      std::any_of(token.begin(), token.end(), [](char c) { return c < 0x21 || c > 0x7e; })) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": the token must be 1 to ",
                                                   kMaxTokenBytes,
                                                   " printable characters without spaces"));
  }
  return token;
}

}  // namespace craft
