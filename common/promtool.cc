#include "common/promtool.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace craft::testing {
namespace {

// The first executable `name` on PATH, or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

absl::Status PromtoolCheckMetrics(const std::string& text) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    return absl::NotFoundError("promtool is not installed (apt-get install prometheus)");
  }
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string file =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/metrics-", ::getpid(), ".txt");
  std::ofstream(file) << text;
  const std::string command = absl::StrCat(promtool, " check metrics < ", file, " 2>&1");
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("cannot run promtool");
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = ::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  ::unlink(file.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("promtool check metrics: ", output));
}

}  // namespace craft::testing
