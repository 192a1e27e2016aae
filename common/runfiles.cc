#include "common/runfiles.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace craft {
namespace {

constexpr char kWorkspace[] = "craft";

bool IsDirectory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// The runfiles tree beside this executable, "" when there is none.
std::string OwnRunfilesDir() {
  char exe[4096];
  const ssize_t length = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (length <= 0) return "";
  const std::string dir = absl::StrCat(absl::string_view(exe, length), ".runfiles");
  return IsDirectory(dir) ? dir : "";
}

}  // namespace

std::string Runfile(absl::string_view path) {
  for (const char* variable : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    if (const char* root = std::getenv(variable); root != nullptr && *root != '\0') {
      return absl::StrCat(root, "/", kWorkspace, "/", path);
    }
  }
  if (const std::string root = OwnRunfilesDir(); !root.empty()) {
    return absl::StrCat(root, "/", kWorkspace, "/", path);
  }
  return std::string(path);
}

}  // namespace craft
