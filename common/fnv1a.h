// FNV-1a, 64 bit: the checksum of expert weights on the wire (proto/README.md)
// and of the planner's state file.
#ifndef CRAFT_COMMON_FNV1A_H_
#define CRAFT_COMMON_FNV1A_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace craft {

inline constexpr uint64_t kFnv1a64OffsetBasis = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnv1a64Prime = 0x100000001b3ULL;

// FNV-1a over `data`, continuing from `hash` (pass a previous result to hash
// data that arrives in pieces). Pure; thread-safe.
inline uint64_t Fnv1a64(absl::string_view data, uint64_t hash = kFnv1a64OffsetBasis) {
  for (char c : data) {
    hash ^= static_cast<uint8_t>(c);
    hash *= kFnv1a64Prime;
  }
  return hash;
}

}  // namespace craft

#endif  // CRAFT_COMMON_FNV1A_H_
