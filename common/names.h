// What a node or certificate name may be: the one definition used by the
// planner's config, its hello checks and its authorizer. Names end up in
// logs, metrics, ListAgents and certificates, so they are DNS-like and short
// (Kubernetes node names are DNS subdomains).
#ifndef CRAFT_COMMON_NAMES_H_
#define CRAFT_COMMON_NAMES_H_

#include <algorithm>
#include <cstddef>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"

namespace craft {

inline constexpr size_t kMaxNameBytes = 253;  // a DNS name

// 1 to 253 letters, digits, '-', '.' or '_'.
inline bool IsValidName(absl::string_view name) {
  return !name.empty() && name.size() <= kMaxNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ||
                  c == '_';
         });
}

}  // namespace craft

#endif  // CRAFT_COMMON_NAMES_H_
