// Peer-supplied text (a node name, a NACK's error, an algorithm name) goes
// into logs and error messages clipped: one message must not write megabytes
// to the log or produce a status too large to send back.
#ifndef CRAFT_COMMON_CLIP_H_
#define CRAFT_COMMON_CLIP_H_

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace craft {

inline constexpr size_t kClippedTextBytes = 256;

// `text` when at most `max_bytes` long, else its first `max_bytes` bytes and
// "...(N bytes)".
inline std::string Clip(absl::string_view text, size_t max_bytes = kClippedTextBytes) {
  if (text.size() <= max_bytes) return std::string(text);
  return absl::StrCat(text.substr(0, max_bytes), "...(", text.size(), " bytes)");
}

}  // namespace craft

#endif  // CRAFT_COMMON_CLIP_H_
