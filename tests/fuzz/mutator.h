// Seeded mutations for the fuzz runners: the kinds of edits libFuzzer makes
// (bit flips, byte inserts and deletes, truncation, splicing another input,
// interesting integers), without its coverage feedback, and for protobuf
// inputs edits of the parsed message's fields (a varint cannot grow to
// INT64_MAX in place without breaking every enclosing length).
//
// Deterministic: the same seed gives the same sequence of mutations.
// Not thread-safe.
#ifndef CRAFT_TESTS_FUZZ_MUTATOR_H_
#define CRAFT_TESTS_FUZZ_MUTATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/types/span.h"
#include "google/protobuf/message.h"

namespace craft::fuzz {

// splitmix64: small, fast, and specified here rather than by the standard
// library, so a seed means the same run everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n); 0 when n is 0.
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
  bool OneIn(size_t n) { return Below(n) == 0; }

 private:
  uint64_t state_;
};

// Integers at the edges of what code checks: 0, -1, powers of two and their
// neighbours, INT32 and INT64 limits.
absl::Span<const int64_t> InterestingIntegers();

// 1 to 8 stacked byte-level edits of `data`; `other` (another input, maybe
// empty) is spliced from. The result has at most `max_size` bytes.
std::string MutateBytes(std::string data, const std::string& other, size_t max_size, Rng& rng);

// 1 to 4 field-level edits of `data` parsed as `prototype`: a scalar set to an
// interesting value, a string emptied, lengthened or copied from another
// field, a repeated element removed, duplicated or taken from `other`, a
// message or oneof member set or cleared. False (and `data` unchanged) when
// `data` does not parse or the result would exceed `max_size`.
bool MutateMessage(const google::protobuf::Message& prototype, std::string* data,
                   const std::string& other, size_t max_size, Rng& rng);

}  // namespace craft::fuzz

#endif  // CRAFT_TESTS_FUZZ_MUTATOR_H_
