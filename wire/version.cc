#include "wire/version.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace craft {
namespace {

// One part of a version as ToString writes it: decimal digits, no sign, no
// leading zero (but "0" itself). False for anything else or beyond int64.
bool ParsePart(absl::string_view text, int64_t* value) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  if (!std::all_of(text.begin(), text.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return false;
  }
  return absl::SimpleAtoi(text, value);  // false on overflow
}

}  // namespace

absl::StatusOr<Version> Version::Parse(absl::string_view text) {
  if (text.size() > kMaxVersionBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a layout version of ", text.size(),
                                                   " bytes is longer than ", kMaxVersionBytes));
  }
  const size_t dot = text.find('.');
  int64_t epoch = 0, seq = 0;
  if (dot == absl::string_view::npos || !ParsePart(text.substr(0, dot), &epoch) ||
      !ParsePart(text.substr(dot + 1), &seq)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout version '", absl::CHexEscape(text),
        "' is not <epoch>.<seq> (two decimal numbers below 2^63, no sign, no leading zeros)"));
  }
  return Version(epoch, seq);
}

Version::Version(int64_t epoch, int64_t seq) : epoch_(epoch), seq_(seq) {
  CRAFT_CHECK(epoch >= 0 && seq >= 0) << "version " << epoch << "." << seq;
}

std::string Version::ToString() const { return absl::StrCat(epoch_, ".", seq_); }

std::string VersionOrInitial(absl::string_view version) {
  return version.empty() ? std::string(kInitialVersion) : std::string(version);
}

bool IsVersionName(absl::string_view text) {
  return !text.empty() && text.size() <= kMaxVersionBytes &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return absl::ascii_isgraph(static_cast<unsigned char>(c)); });
}

}  // namespace craft
