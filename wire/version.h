// Layout versions: "<epoch>.<seq>" (proto/README.md, "Versions, epochs,
// nonces"). A version names one layout and is never reused. The epoch is the
// planner's leadership term; seq counts the versions minted in it. Messages
// carry the string; this is what it means.
//
//   const Version next(epoch, ++seq);  // the planner mints
//   prepare.mutable_layout()->set_version(next.ToString());
//   CRAFT_ASSIGN_OR_RETURN(const Version stored, Version::Parse(layout.version()));
//   if (stored > Version(saved_epoch, saved_seq)) ...  // minted after the counters: refuse
//
// Only the planner, which mints versions, reads their numbers (and the
// metrics, which show them). The agent and the worker compare versions only
// for equality, as names: a version string from the network is checked
// with IsVersionName, and "" stands for the initial version (VersionOrInitial).
//
// Thread-safety: a plain value; the functions are pure.
#ifndef CRAFT_WIRE_VERSION_H_
#define CRAFT_WIRE_VERSION_H_

#include <cstdint>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wire/limits.h"

namespace craft {

// The initial layout's version: the layout every worker starts with and every
// party knows without being told (planner::ContiguousLayout).
inline constexpr char kInitialVersion[] = "0.0";

class Version {
 public:
  // kInitialVersion.
  static Version Initial() { return Version(0, 0); }

  // "<epoch>.<seq>" in decimal, as ToString writes it: digits only, no sign,
  // no leading zeros, each part an int64, at most kMaxVersionBytes long.
  // INVALID_ARGUMENT naming the text otherwise. Only the one spelling parses,
  // so that two strings never name one version.
  static absl::StatusOr<Version> Parse(absl::string_view text);

  // Mints epoch.seq. Both are non-negative (CRAFT_CHECK: the planner's
  // counters are checked when they are loaded).
  Version(int64_t epoch, int64_t seq);

  int64_t epoch() const { return epoch_; }
  int64_t seq() const { return seq_; }

  // "<epoch>.<seq>", what messages carry.
  std::string ToString() const;

  // Minting order: by epoch, then by seq. A version minted later compares
  // greater.
  friend bool operator==(const Version& a, const Version& b) { return a.Key() == b.Key(); }
  friend bool operator!=(const Version& a, const Version& b) { return a.Key() != b.Key(); }
  friend bool operator<(const Version& a, const Version& b) { return a.Key() < b.Key(); }
  friend bool operator>(const Version& a, const Version& b) { return a.Key() > b.Key(); }
  friend bool operator<=(const Version& a, const Version& b) { return a.Key() <= b.Key(); }
  friend bool operator>=(const Version& a, const Version& b) { return a.Key() >= b.Key(); }

 private:
  std::tuple<int64_t, int64_t> Key() const { return {epoch_, seq_}; }

  int64_t epoch_;
  int64_t seq_;
};

// The version a field names: `version`, or kInitialVersion when it is empty
// (a hello or a window from a worker that never committed anything).
std::string VersionOrInitial(absl::string_view version);

// Whether `text` may stand as the version of a layout an agent or a worker
// acts on (Prepare, Commit): 1 to kMaxVersionBytes printable characters, no
// blanks, so that it fits log lines, acks and the state file's one-line
// fields. Looser than Parse on purpose: those services treat versions as
// names and never read the numbers.
bool IsVersionName(absl::string_view text);

}  // namespace craft

#endif  // CRAFT_WIRE_VERSION_H_
