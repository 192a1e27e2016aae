// Minimal structured logging to stderr (Debian's Abseil predates absl/log):
//   CRAFT_LOG(INFO) << "agent " << node << " connected";
// One line per statement, prefixed with UTC time, level and source location;
// thread-safe (each line is written with a single call).
#ifndef CRAFT_COMMON_LOGGING_H_
#define CRAFT_COMMON_LOGGING_H_

#include <sstream>

namespace craft::logging_internal {

// kFatal is CRAFT_CHECK's (common/check.h), which aborts after the line.
enum class Level { kInfo, kWarning, kError, kFatal };

class LogLine {
 public:
  LogLine(Level level, const char* file, int line);
  ~LogLine();
  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

}  // namespace craft::logging_internal

#define CRAFT_LOG_LEVEL_INFO ::craft::logging_internal::Level::kInfo
#define CRAFT_LOG_LEVEL_WARNING ::craft::logging_internal::Level::kWarning
#define CRAFT_LOG_LEVEL_ERROR ::craft::logging_internal::Level::kError
#define CRAFT_LOG(level) \
  ::craft::logging_internal::LogLine(CRAFT_LOG_LEVEL_##level, __FILE__, __LINE__)

#endif  // CRAFT_COMMON_LOGGING_H_
