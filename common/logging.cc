#include "common/logging.h"

#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace craft::logging_internal {

LogLine::LogLine(Level level, const char* file, int line) {
  const char* name = level == Level::kInfo      ? "I"
                     : level == Level::kWarning ? "W"
                     : level == Level::kError   ? "E"
                                                : "F";
  const char* base = std::strrchr(file, '/');
  stream_ << name << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
          << " " << (base ? base + 1 : file) << ":" << line << "] ";
}

LogLine::~LogLine() {
  stream_ << '\n';
  const std::string text = stream_.str();
  // One write(2) per line keeps lines from different threads whole.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace craft::logging_internal
