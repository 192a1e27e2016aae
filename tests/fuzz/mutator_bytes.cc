// Byte-level edits (mutator.h).
#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tests/fuzz/mutator.h"

namespace craft::fuzz {
namespace {

constexpr int64_t kInteresting[] = {
    0,
    1,
    -1,
    2,
    7,
    8,
    16,
    127,
    128,
    255,
    256,
    1000,
    1024,
    4096,
    65535,
    65536,
    1 << 20,
    std::numeric_limits<int32_t>::max(),
    std::numeric_limits<int32_t>::min(),
    int64_t{1} << 31,
    std::numeric_limits<uint32_t>::max(),
    int64_t{1} << 32,
    int64_t{1} << 40,
    (int64_t{1} << 40) + 1,
    int64_t{1} << 53,
    (int64_t{1} << 53) + 1,
    int64_t{1} << 62,
    std::numeric_limits<int64_t>::max(),
    std::numeric_limits<int64_t>::min(),
    std::numeric_limits<int64_t>::min() + 1,
};

// Numbers as text, for JSON and YAML: the integers above and what a double
// parser or a strict integer parser trips on.
constexpr const char* kInterestingText[] = {
    "-0",  "0.5",  "1e999", "-1e999", "1e-400", "18446744073709551616",
    "NaN", ".nan", ".inf",  "0x10",   "1_000",  "+1",
    "01",  "1e2",  "2.",    "-",
};

// Tokens of the text formats the targets read.
constexpr const char* kTokens[] = {
    "[",        "]",       "{",      "}",     "\"",    ":",     ",",       "-",
    "\n",       " ",       "\t",     "0",     "1",     "null",  "true",    "false",
    "&a ",      "*a",      "!!str ", "? ",    "- ",    "#",     "\\u0000", "\\",
    "[[[[[[[[", "{\"a\":", "'",      "|\n  ", ">\n  ", "---\n", "...\n",   "<<: ",
};

char InterestingByte(Rng& rng) {
  constexpr unsigned char kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, '0', '9', '-', '"'};
  return static_cast<char>(kBytes[rng.Below(sizeof(kBytes))]);
}

std::string FixedWidth(int64_t value, size_t width) {
  std::string bytes(width, '\0');
  for (size_t i = 0; i < width; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

std::string Varint(int64_t value) {
  uint64_t v = static_cast<uint64_t>(value);
  std::string bytes;
  do {
    bytes.push_back(static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
    v >>= 7;
  } while (v != 0);
  return bytes;
}

// A decimal number in `data` at or after `from`: [begin, end), or begin ==
// end when there is none.
std::pair<size_t, size_t> FindNumber(const std::string& data, size_t from) {
  size_t begin = from;
  while (begin < data.size() && !absl::ascii_isdigit(static_cast<unsigned char>(data[begin]))) {
    ++begin;
  }
  if (begin == data.size()) return {0, 0};
  size_t end = begin;
  while (end < data.size() && absl::ascii_isdigit(static_cast<unsigned char>(data[end]))) ++end;
  if (begin > 0 && data[begin - 1] == '-') --begin;
  return {begin, end};
}

void EditOnce(std::string& data, const std::string& other, Rng& rng) {
  const size_t size = data.size();
  switch (rng.Below(12)) {
    case 0:  // flip a bit
      if (size > 0) data[rng.Below(size)] ^= static_cast<char>(1 << rng.Below(8));
      return;
    case 1:  // set a byte
      if (size > 0) {
        data[rng.Below(size)] =
            rng.OneIn(2) ? InterestingByte(rng) : static_cast<char>(rng.Below(256));
      }
      return;
    case 2: {  // insert bytes
      std::string bytes;
      for (size_t n = 1 + rng.Below(4); n > 0; --n) bytes.push_back(static_cast<char>(rng.Next()));
      data.insert(rng.Below(size + 1), bytes);
      return;
    }
    case 3: {  // erase a range
      if (size == 0) return;
      const size_t begin = rng.Below(size);
      const size_t max_len = rng.OneIn(8) ? size - begin : std::min<size_t>(size - begin, 16);
      data.erase(begin, 1 + rng.Below(max_len));
      return;
    }
    case 4:  // truncate
      data.resize(rng.Below(size + 1));
      return;
    case 5: {  // duplicate a chunk (grows repeated fields, lists)
      if (size == 0) return;
      const size_t begin = rng.Below(size);
      const std::string chunk =
          data.substr(begin, 1 + rng.Below(std::min<size_t>(size - begin, 64)));
      data.insert(rng.Below(size + 1), chunk);
      return;
    }
    case 6:  // splice: a prefix of this, a suffix of the other
      if (!other.empty())
        data = data.substr(0, rng.Below(size + 1)) + other.substr(rng.Below(other.size()));
      return;
    case 7: {  // insert a chunk of the other
      if (other.empty()) return;
      const size_t begin = rng.Below(other.size());
      data.insert(rng.Below(size + 1),
                  other.substr(begin, 1 + rng.Below(std::min<size_t>(other.size() - begin, 64))));
      return;
    }
    case 8: {  // overwrite a fixed-width little-endian integer
      const size_t width = size_t{1} << rng.Below(4);
      if (size < width) return;
      const std::string bytes =
          FixedWidth(InterestingIntegers()[rng.Below(InterestingIntegers().size())], width);
      data.replace(rng.Below(size - width + 1), width, bytes);
      return;
    }
    case 9:  // insert a varint
      data.insert(rng.Below(size + 1),
                  Varint(InterestingIntegers()[rng.Below(InterestingIntegers().size())]));
      return;
    case 10: {  // replace a decimal number with an interesting one
      const auto [begin, end] = FindNumber(data, rng.Below(size + 1));
      if (begin == end) return;
      const size_t pick = rng.Below(InterestingIntegers().size() + std::size(kInterestingText));
      const std::string number = pick < InterestingIntegers().size()
                                     ? absl::StrCat(InterestingIntegers()[pick])
                                     : kInterestingText[pick - InterestingIntegers().size()];
      data.replace(begin, end - begin, number);
      return;
    }
    default:  // insert a token
      data.insert(rng.Below(size + 1), kTokens[rng.Below(std::size(kTokens))]);
      return;
  }
}

}  // namespace

absl::Span<const int64_t> InterestingIntegers() { return kInteresting; }

std::string MutateBytes(std::string data, const std::string& other, size_t max_size, Rng& rng) {
  for (size_t edits = 1 + rng.Below(rng.OneIn(4) ? 8 : 2); edits > 0; --edits) {
    EditOnce(data, other, rng);
  }
  if (data.size() > max_size) data.resize(max_size);
  return data;
}

}  // namespace craft::fuzz
