#include "common/check.h"

#include <cstdlib>

namespace craft::logging_internal {

CheckFailure::CheckFailure(const char* file, int line, const char* condition) {
  line_.emplace(Level::kFatal, file, line);
  *line_ << "check failed: " << condition;
}

CheckFailure::~CheckFailure() {
  line_.reset();  // one write(2), before the process goes
  std::abort();
}

}  // namespace craft::logging_internal
