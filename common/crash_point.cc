#include "common/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace craft {
namespace {

// The control file, read once: crash points are armed for the whole process
// or not at all.
const std::string* ControlFile() {
  static const std::string* const file = [] {
    const char* path = std::getenv("CRAFT_CRASH_POINTS_FILE");
    return path != nullptr && *path != '\0' ? new std::string(path) : nullptr;
  }();
  return file;
}

struct HitState {
  absl::Mutex mu;
  std::string armed_line ABSL_GUARDED_BY(mu);  // the spec the count belongs to
  int hits ABSL_GUARDED_BY(mu) = 0;
};

HitState& State() {
  static HitState* const state = new HitState();
  return *state;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

// Writes straight to fd 2: the process is about to die without flushing.
void SayDying(absl::string_view name) {
  const std::string message = absl::StrCat("crash point ", name, " reached\n");
  ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
  (void)ignored;
}

}  // namespace

absl::StatusOr<CrashSpec> ParseCrashSpec(absl::string_view line) {
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
  if (words.empty()) return absl::NotFoundError("no crash point armed");
  CrashSpec spec;
  spec.point = std::string(words[0]);
  for (size_t i = 1; i < words.size(); ++i) {
    absl::string_view word = words[i];
    int* field = nullptr;
    if (absl::ConsumePrefix(&word, "hit=")) {
      field = &spec.hit;
    } else if (absl::ConsumePrefix(&word, "delay_ms=")) {
      field = &spec.delay_ms;
    }
    if (field == nullptr || !absl::SimpleAtoi(word, field) || *field < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("crash point spec '", line, "': bad word '", words[i],
                       "' (want <point> [hit=N] [delay_ms=D], N >= 1, D >= 0)"));
    }
  }
  if (spec.hit < 1) {
    return absl::InvalidArgumentError(absl::StrCat("crash point spec '", line, "': hit < 1"));
  }
  return spec;
}

void ReachCrashPoint(absl::string_view name) {
  const std::string* file = ControlFile();
  if (file == nullptr) return;
  HitState& state = State();
  CrashSpec spec;
  {
    absl::MutexLock lock(&state.mu);
    const std::string line = FirstLine(*file);
    if (line != state.armed_line) {  // re-armed (or disarmed): count afresh
      state.armed_line = line;
      state.hits = 0;
    }
    absl::StatusOr<CrashSpec> parsed = ParseCrashSpec(line);
    if (!parsed.ok() || parsed->point != name) return;
    if (++state.hits < parsed->hit) return;
    spec = *std::move(parsed);
    std::ofstream(*file, std::ios::trunc);  // a restart must not crash again
  }
  if (spec.delay_ms > 0) absl::SleepFor(absl::Milliseconds(spec.delay_ms));
  SayDying(name);
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

}  // namespace craft
