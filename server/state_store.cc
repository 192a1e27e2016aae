#include "server/state_store.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/file_io.h"
#include "common/fnv1a.h"
#include "common/status_macros.h"
#include "wire/version.h"

namespace craft::server {
namespace {

// Version 2 checksums its header; version 1 (no header checksum) is still
// read, so that an upgrade keeps the committed layout.
constexpr absl::string_view kMagic = "craft-planner-state 2";
constexpr absl::string_view kMagicV1 = "craft-planner-state 1";
// Epochs and sequence numbers stay far from overflow: a restart adds one to
// the epoch, an apply one to the sequence number.
constexpr int64_t kMaxCounter = int64_t{1} << 62;

// Parses the header line "name value".
bool IntField(absl::string_view line, absl::string_view name, int64_t* value) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  return parts.size() == 2 && parts[0] == name && absl::SimpleAtoi(parts[1], value);
}

// Parses the header line "name <length> <fnv1a>" describing one blob.
bool BlobField(absl::string_view line, absl::string_view name, uint64_t* length,
               uint64_t* checksum) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  return parts.size() == 3 && parts[0] == name && absl::SimpleAtoi(parts[1], length) &&
         absl::SimpleAtoi(parts[2], checksum);
}

std::string BlobLine(absl::string_view name, absl::string_view blob) {
  return absl::StrCat(name, " ", blob.size(), " ", Fnv1a64(blob), "\n");
}

// Empty when the counters and the versions they minted are consistent: a
// version "<epoch>.<seq>" never comes after the counters saved with it (else
// the next apply would mint it again), and nothing overflows.
std::string CheckCounters(const PlannerState& state) {
  if (state.epoch < 1 || state.epoch >= kMaxCounter) {
    return absl::StrCat("epoch ", state.epoch, " outside [1, 2^62)");
  }
  if (state.seq < 0 || state.seq >= kMaxCounter) {
    return absl::StrCat("seq ", state.seq, " outside [0, 2^62)");
  }
  std::vector<const craft::v1::Layout*> layouts = {&state.committed};
  if (state.previous.has_value()) layouts.push_back(&*state.previous);
  const Version counters(state.epoch, state.seq);
  for (const craft::v1::Layout* layout : layouts) {
    if (layout->version().empty()) continue;  // the initial layout
    const absl::StatusOr<Version> version = Version::Parse(layout->version());
    if (!version.ok()) return std::string(version.status().message());
    if (*version > counters) {
      return absl::StrCat("layout version ", layout->version(), " is later than epoch ",
                          state.epoch, " seq ", state.seq, ": versions would be minted twice");
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<PlannerState> DecodePlannerState(absl::string_view text, absl::string_view source) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(source, " is corrupt (", why,
                                            "); refusing to start from scratch, which could "
                                            "reuse layout versions"));
  };
  if (absl::StartsWith(text, "craft-planner-state ") && !absl::StartsWith(text, kMagic) &&
      !absl::StartsWith(text, kMagicV1)) {
    const absl::string_view first_line = text.substr(0, std::min<size_t>(text.find('\n'), 64));
    return absl::DataLossError(absl::StrCat(source, " has an unknown schema version ('", first_line,
                                            "'; this planner reads versions 1 and 2)"));
  }
  // Five header lines (six in version 2: the last checksums the first five),
  // then the committed and the previous layout's bytes.
  const bool v1 = absl::StartsWith(text, absl::StrCat(kMagicV1, "\n"));
  const int header_lines = v1 ? 5 : 6;
  std::vector<absl::string_view> lines = absl::StrSplit(text, absl::MaxSplits('\n', header_lines));
  if (static_cast<int>(lines.size()) != header_lines + 1 || (!v1 && lines[0] != kMagic)) {
    return corrupt("bad header");
  }
  if (!v1) {
    int64_t header_checksum = 0;
    const absl::string_view header(text.data(), lines[5].data() - text.data());
    if (!IntField(lines[5], "header", &header_checksum) ||
        static_cast<uint64_t>(header_checksum) != Fnv1a64(header)) {
      return corrupt("header checksum mismatch");
    }
  }
  PlannerState state;
  uint64_t committed_length = 0, committed_checksum = 0, previous_length = 0, previous_checksum = 0;
  if (!IntField(lines[1], "epoch", &state.epoch) || !IntField(lines[2], "seq", &state.seq) ||
      !BlobField(lines[3], "committed", &committed_length, &committed_checksum) ||
      !BlobField(lines[4], "previous", &previous_length, &previous_checksum)) {
    return corrupt("bad header fields");
  }
  absl::string_view blobs = lines[header_lines];
  if (blobs.size() != committed_length + previous_length) return corrupt("truncated layouts");
  const absl::string_view committed = blobs.substr(0, committed_length);
  const absl::string_view previous = blobs.substr(committed_length);
  if (Fnv1a64(committed) != committed_checksum || Fnv1a64(previous) != previous_checksum) {
    return corrupt("checksum mismatch");
  }
  if (!state.committed.ParseFromArray(committed.data(), static_cast<int>(committed.size()))) {
    return corrupt("unparsable committed layout");
  }
  if (!previous.empty()) {
    state.previous.emplace();
    if (!state.previous->ParseFromArray(previous.data(), static_cast<int>(previous.size()))) {
      return corrupt("unparsable previous layout");
    }
  }
  if (std::string bad = CheckCounters(state); !bad.empty()) return corrupt(bad);
  return state;
}

absl::StatusOr<std::string> EncodePlannerState(const PlannerState& state) {
  std::string committed, previous;
  if (!state.committed.SerializeToString(&committed) ||
      (state.previous.has_value() && !state.previous->SerializeToString(&previous))) {
    return absl::InternalError("cannot serialize the layouts");
  }
  if (std::string bad = CheckCounters(state); !bad.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("refusing to save planner state: ", bad));
  }
  const std::string header =
      absl::StrCat(kMagic, "\nepoch ", state.epoch, "\nseq ", state.seq, "\n",
                   BlobLine("committed", committed), BlobLine("previous", previous));
  // The checksum is printed as a signed number: IntField reads int64.
  return absl::StrCat(header, "header ", static_cast<int64_t>(Fnv1a64(header)), "\n", committed,
                      previous);
}

absl::StatusOr<std::optional<PlannerState>> FileStateStore::Load() {
  absl::StatusOr<std::string> read = ReadFileToString(path_);
  if (!read.ok()) {
    if (absl::IsNotFound(read.status())) return std::nullopt;  // first start
    return absl::InternalError(absl::StrCat("cannot open state file ", read.status().message()));
  }
  return DecodePlannerState(*read, absl::StrCat("state file '", path_, "'"));
}

absl::Status FileStateStore::Save(const PlannerState& state) {
  CRAFT_ASSIGN_OR_RETURN(const std::string contents, EncodePlannerState(state));
  absl::MutexLock lock(&mu_);
  return WriteFileAtomically(path_, contents);
}

absl::StatusOr<std::optional<PlannerState>> InMemoryStateStore::Load() {
  absl::MutexLock lock(&mu_);
  return state_;
}

absl::Status InMemoryStateStore::Save(const PlannerState& state) {
  absl::MutexLock lock(&mu_);
  if (fail_saves_) return absl::UnavailableError("injected state store failure");
  state_ = state;
  ++saves_;
  return absl::OkStatus();
}

void InMemoryStateStore::set_fail_saves(bool fail) {
  absl::MutexLock lock(&mu_);
  fail_saves_ = fail;
}

int InMemoryStateStore::saves() const {
  absl::MutexLock lock(&mu_);
  return saves_;
}

}  // namespace craft::server
