#include "planner/io/trace_json_fast.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <system_error>
#include <vector>

#include "absl/types/span.h"
#include "planner/io/trace_json.h"

namespace craft::planner::io_internal {
namespace {

// Nesting deeper than this in ignored values is left to the reference reader,
// so that hostile input cannot exhaust the stack here.
constexpr int kMaxSkipDepth = 64;

// Integer literals of more digits than this are above 2^53 (16 digits) or,
// in ignored values, left to the reference (which reads long ones as floats).
constexpr int kMaxCountDigits = 16;
constexpr int kMaxSkipDigits = 18;

// A JSON number token: the literal and whether it is an integer (no fraction,
// no exponent), which is how nlohmann, and so the reference, types it.
struct NumberToken {
  const char* begin = nullptr;
  const char* end = nullptr;
  bool negative = false;
  bool integer = true;
  int int_digits = 0;
  // The digits before any fraction, read while scanning (a second pass over
  // them was a fifth of the reading time); exact up to kMaxCountDigits.
  uint64_t int_value = 0;
};

// A forward-only reader of one JSON text. Every method returns false both
// for malformed JSON and for what it leaves to the reference reader; callers
// only pass that on.
class Reader {
 public:
  explicit Reader(absl::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  const char* position() const { return p_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool AtEnd() {
    SkipSpace();
    return p_ == end_;
  }
  // Consumes `c` (after whitespace) when it comes next.
  bool Consume(char c) {
    SkipSpace();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  bool Peek(char c) {
    SkipSpace();
    return p_ < end_ && *p_ == c;
  }
  bool PeekNumber() {
    SkipSpace();
    return p_ < end_ && (*p_ == '-' || (*p_ >= '0' && *p_ <= '9'));
  }

  // A string of printable ASCII without escapes: the only strings a trace
  // needs. Escapes and other bytes go to the reference, which checks UTF-8
  // and surrogates.
  bool ReadString(absl::string_view& out) {
    if (!Consume('"')) return false;
    const char* begin = p_;
    while (p_ < end_ && *p_ != '"') {
      const auto byte = static_cast<unsigned char>(*p_);
      if (byte < 0x20 || byte >= 0x80 || byte == '\\') return false;
      ++p_;
    }
    if (p_ == end_) return false;
    out = absl::string_view(begin, static_cast<size_t>(p_ - begin));
    ++p_;
    return true;
  }

  // The JSON grammar of a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  inline bool ReadNumber(NumberToken& token) {
    SkipSpace();
    token = NumberToken{p_};
    if (p_ < end_ && *p_ == '-') {
      token.negative = true;
      ++p_;
    }
    const char* digits = p_;
    if (p_ < end_ && *p_ == '0') {
      ++p_;
    } else {
      // Wraps harmlessly past 19 digits: such literals are never used as values.
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
        token.int_value = token.int_value * 10 + static_cast<uint64_t>(*p_ - '0');
        ++p_;
      }
      if (p_ == digits) return false;
    }
    token.int_digits = static_cast<int>(p_ - digits);
    if (p_ < end_ && *p_ == '.') {
      token.integer = false;
      ++p_;
      if (!SkipDigits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      token.integer = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!SkipDigits()) return false;
    }
    token.end = p_;
    return true;
  }

  // Any JSON value, checked as strictly as the reference parses it.
  bool SkipValue(int depth) {
    SkipSpace();
    if (p_ == end_ || depth > kMaxSkipDepth) return false;
    switch (*p_) {
      case '{':
        ++p_;
        if (Consume('}')) return true;
        do {
          absl::string_view key;
          if (!ReadString(key) || !Consume(':') || !SkipValue(depth + 1)) return false;
        } while (Consume(','));
        return Consume('}');
      case '[':
        ++p_;
        if (Consume(']')) return true;
        do {
          if (!SkipValue(depth + 1)) return false;
        } while (Consume(','));
        return Consume(']');
      case '"': {
        absl::string_view text;
        return ReadString(text);
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default: {
        NumberToken token;
        return ReadNumber(token) && SkippedNumberIsFinite(token);
      }
    }
  }

 private:
  bool SkipDigits() {
    const char* begin = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ > begin;
  }
  bool Literal(const char* word) {
    const size_t size = std::strlen(word);
    if (remaining() < size || std::memcmp(p_, word, size) != 0) return false;
    p_ += size;
    return true;
  }
  // The reference refuses numbers that overflow a double ("1e400") even where
  // it ignores them; underflow and long integers are left to it as well.
  static bool SkippedNumberIsFinite(const NumberToken& token) {
    if (token.integer) return token.int_digits <= kMaxSkipDigits;
    double value;
    return std::from_chars(token.begin, token.end, value).ec == std::errc();
  }

  const char* p_;
  const char* end_;
};

// A count as the reference's ToCount() reads it: non-negative, at most 2^53,
// floats rounded half away from zero. from_chars rounds decimal literals to
// the nearest double as nlohmann's strtod does, so the values agree.
inline bool CountValue(const NumberToken& token, int64_t& out) {
  if (token.integer) {
    if (token.int_digits > kMaxCountDigits) return false;
    const auto value = static_cast<int64_t>(token.int_value);
    // "-0" is the integer 0 there; other negative integers are refused.
    if (value > kMaxTraceCount || (token.negative && value != 0)) return false;
    out = value;
    return true;
  }
  double value;
  if (std::from_chars(token.begin, token.end, value).ec != std::errc()) return false;
  // -0.0 passes (it is not < 0) and rounds to 0, as in the reference's ToCount().
  if (!(value >= 0) || value > static_cast<double>(kMaxTraceCount)) return false;
  out = std::llround(value);
  return true;
}

// Reads an array of `rows` arrays of `columns` counts, row `l` into row(l).
template <typename RowFn>
bool ReadMatrix(Reader& in, int rows, int columns, RowFn row) {
  if (!in.Consume('[')) return false;
  for (int l = 0; l < rows; ++l) {
    if ((l > 0 && !in.Consume(',')) || !in.Consume('[')) return false;
    int64_t* cells = row(l);
    for (int e = 0; e < columns; ++e) {
      NumberToken token;
      if ((e > 0 && !in.Consume(',')) || !in.ReadNumber(token) || !CountValue(token, *cells++)) {
        return false;
      }
    }
    if (!in.Consume(']')) return false;
  }
  return in.Consume(']');
}

// True when a byte of `word` is `byte` (the classic has-zero-byte test on
// word ^ byte repeated).
inline bool HasByte(uint64_t word, unsigned char byte) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  const uint64_t x = word ^ (kOnes * byte);
  return ((x - kOnes) & ~x & (kOnes << 7)) != 0;
}

// The number of arrays in the array starting at the reader's position,
// counted without reading them, so that the trace can be allocated before the
// windows are read straight into it: the times the nesting depth falls from 2
// to 1. Only the brackets matter, so eight bytes without one are skipped at a
// time (the scan took a third of the reading time byte by byte). Exact for a
// well-formed array; for anything else the reading that follows fails, and
// the caller bounds what a wrong count may allocate.
std::optional<int64_t> CountArrays(const Reader& in) {
  const char* p = in.position();
  const char* const end = p + in.remaining();
  int64_t depth = 0;
  int64_t arrays = 0;
  while (p < end) {
    if (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof(word));
      if (!HasByte(word, '[') && !HasByte(word, ']')) {
        p += 8;
        continue;
      }
    }
    if (*p == '[') {
      ++depth;
    } else if (*p == ']') {
      if (--depth == 1) ++arrays;
      if (depth == 0) return arrays;
      if (depth < 0) return std::nullopt;
    }
    ++p;
  }
  return std::nullopt;
}

// A header member: whether the key came, and its value when that is a
// non-negative integer literal (the reference refuses any other value, except
// for "top_k" in format (a), which it ignores).
struct IntMember {
  bool seen = false;
  std::optional<int64_t> value;

  // Reads the member's value; false for a repeated key, which is left to the
  // reference (nlohmann keeps the last value).
  bool Read(Reader& in) {
    if (seen) return false;
    seen = true;
    if (!in.PeekNumber()) return in.SkipValue(1);
    NumberToken token;
    if (!in.ReadNumber(token)) return false;
    if (token.integer && !token.negative && token.int_digits <= kMaxCountDigits) {
      value = static_cast<int64_t>(token.int_value);
    }
    return true;
  }
  bool InRange(int64_t min_value, int64_t max_value) const {
    return value.has_value() && *value >= min_value && *value <= max_value;
  }
};

// What the root object holds, as far as the reader got.
struct Header {
  std::optional<absl::string_view> format;
  IntMember num_layers;
  IntMember num_experts;
  IntMember top_k;
  bool counts_seen = false;
  bool windows_seen = false;
};

class TraceReader {
 public:
  explicit TraceReader(absl::string_view text) : in_(text), text_size_(text.size()) {}

  std::optional<FastTrace> Read() {
    if (!in_.Consume('{') || in_.Peek('}')) return std::nullopt;
    do {
      absl::string_view key;
      if (!in_.ReadString(key) || !in_.Consume(':') || !ReadMember(key)) return std::nullopt;
    } while (in_.Consume(','));
    if (!in_.Consume('}') || !in_.AtEnd() || !Finish()) return std::nullopt;
    return std::move(fast_);
  }

 private:
  // A repeated known key is left to the reference (nlohmann keeps the last).
  bool ReadMember(absl::string_view key) {
    if (key == "format") {
      if (h_.format.has_value()) return false;
      absl::string_view name;
      if (!in_.ReadString(name)) return false;
      h_.format = name;
      return true;
    }
    if (key == "num_layers") return h_.num_layers.Read(in_);
    if (key == "num_experts") return h_.num_experts.Read(in_);
    if (key == "top_k") return h_.top_k.Read(in_);
    if (key == "counts") {
      if (h_.counts_seen || !ShapeKnown()) return false;
      h_.counts_seen = true;
      const int64_t cells = int64_t{num_layers_} * num_experts_;
      if (cells > kMaxTraceCells || cells > static_cast<int64_t>(text_size_ / 2)) return false;
      counts_.resize(static_cast<size_t>(cells));
      return ReadMatrix(in_, num_layers_, num_experts_, [&](int l) {
        return counts_.data() + static_cast<size_t>(l) * num_experts_;
      });
    }
    if (key == "windows") {
      if (h_.windows_seen || !ShapeKnown()) return false;
      h_.windows_seen = true;
      return ReadWindows();
    }
    return in_.SkipValue(1);
  }

  // L and E, once both came (before the matrices, as every writer puts them).
  bool ShapeKnown() {
    if (!h_.num_layers.InRange(1, kMaxTraceLayers) ||
        !h_.num_experts.InRange(1, kMaxTraceExperts)) {
      return false;
    }
    num_layers_ = static_cast<int>(*h_.num_layers.value);
    num_experts_ = static_cast<int>(*h_.num_experts.value);
    return true;
  }

  // The windows go straight into the trace, counted first to allocate it.
  bool ReadWindows() {
    const std::optional<int64_t> windows = CountArrays(in_);
    if (!windows.has_value()) return false;
    const int64_t layer_cells = int64_t{num_layers_} * num_experts_;
    // The cell limit, divided rather than multiplied: the count is bounded
    // only by the text.
    if (*windows + 1 > kMaxTraceCells / layer_cells) return false;
    // Each cell takes at least two bytes ("0,"), and a well-formed file holds
    // every window, or the counts when there are none, so the allocation
    // stays within a few times the text's size whatever the header claims.
    if (layer_cells * std::max<int64_t>(*windows, 1) > static_cast<int64_t>(text_size_ / 2)) {
      return false;
    }
    fast_.trace = LoadTrace(num_layers_, num_experts_, static_cast<int>(*windows));
    if (!in_.Consume('[')) return false;
    for (int b = 0; b < *windows; ++b) {
      if ((b > 0 && !in_.Consume(',')) || !ReadMatrix(in_, num_layers_, num_experts_, [&](int l) {
            return fast_.trace.mutable_window(b, l).data();
          })) {
        return false;
      }
    }
    return in_.Consume(']');
  }

  // The checks that need the whole root: those of the reference's
  // LocateMatrices() and CheckSize() not made while reading.
  bool Finish() {
    const bool craft_format = h_.format.has_value();
    if (craft_format && *h_.format != kTraceFormatV1) return false;
    if (!ShapeKnown()) return false;
    if (craft_format && h_.top_k.seen && !h_.top_k.InRange(1, num_experts_)) return false;
    if (h_.windows_seen && !craft_format) return false;
    if (!h_.counts_seen && fast_.trace.num_windows() == 0) return false;
    // Without windows the trace is the counts alone, whose size was checked.
    if (!h_.windows_seen) fast_.trace = LoadTrace(num_layers_, num_experts_);
    fast_.has_counts = h_.counts_seen;
    if (h_.counts_seen) {
      for (int l = 0; l < num_layers_; ++l) {
        const absl::Span<int64_t> row = fast_.trace.mutable_aggregate(l);
        std::memcpy(row.data(), counts_.data() + static_cast<size_t>(l) * num_experts_,
                    row.size() * sizeof(int64_t));
      }
    }
    return true;
  }

  Reader in_;
  size_t text_size_;
  Header h_;
  int num_layers_ = 0;
  int num_experts_ = 0;
  std::vector<int64_t> counts_;
  FastTrace fast_;
};

}  // namespace

std::optional<FastTrace> ReadTraceFast(absl::string_view text) { return TraceReader(text).Read(); }

}  // namespace craft::planner::io_internal
