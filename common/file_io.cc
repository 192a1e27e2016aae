#include "common/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace craft {
namespace {

// Closes on every return path; a failed close of a read-only descriptor
// loses nothing, so its result is ignored.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() { ::close(fd_); }

 private:
  const int fd_;
};

// `size` says how many bytes, e.g. "12 bytes" or "at least 12 bytes".
absl::Status TooLarge(const std::string& path, absl::string_view size, int64_t max_bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat(path, " is ", size, ", more than the limit of ", max_bytes));
}

// Reads until end of file into `data`, whose size is the stat size: the
// first reads fill it in place; past it, a stack buffer probes for more, so
// a file that did not grow costs one empty read and no reallocation.
absl::Status ReadToEnd(int fd, const std::string& path, int64_t max_bytes, std::string& data) {
  size_t used = 0;
  char probe[16 * 1024];  // small: callers may run on thin thread stacks
  while (true) {
    const bool in_place = used < data.size();
    char* buffer = in_place ? &data[used] : probe;
    const size_t room = in_place ? data.size() - used : sizeof(probe);
    const ssize_t n = ::read(fd, buffer, room);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat(path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    if (static_cast<uint64_t>(used) + static_cast<uint64_t>(n) > static_cast<uint64_t>(max_bytes)) {
      return TooLarge(path, absl::StrCat("at least ", used + n, " bytes"), max_bytes);
    }
    if (!in_place) data.append(probe, static_cast<size_t>(n));
    used += static_cast<size_t>(n);
  }
  data.resize(used);  // the file shrank, or is empty
  return absl::OkStatus();
}

// NOT_FOUND means exactly ENOENT: callers take it as "never written" (a
// first start), which ENXIO (a socket) or ENODEV must not pass for.
absl::Status OpenError(int error, const std::string& path) {
  absl::Status status = absl::ErrnoToStatus(error, path);
  if (error != ENOENT && absl::IsNotFound(status)) {
    return absl::FailedPreconditionError(status.message());
  }
  return status;
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path, int64_t max_bytes,
                                             int64_t offset) {
  if (max_bytes < 0 || offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": negative max_bytes ", max_bytes, " or offset ", offset));
  }
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return OpenError(errno, path);
  const FdCloser closer(fd);

  struct stat info;
  if (::fstat(fd, &info) != 0) return absl::ErrnoToStatus(errno, path);
  if (S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", std::strerror(EISDIR)));
  }
  // Only a regular file's stat size means anything; pipes and /proc files
  // stat as 0 bytes and are simply read to end of file.
  const int64_t expected = S_ISREG(info.st_mode) ? std::max<int64_t>(0, info.st_size - offset) : 0;
  if (expected > max_bytes) {
    return TooLarge(path,
                    offset == 0 ? absl::StrCat(expected, " bytes")
                                : absl::StrCat(expected, " bytes from offset ", offset),
                    max_bytes);
  }
  if (offset > 0 && ::lseek(fd, offset, SEEK_SET) < 0) return absl::ErrnoToStatus(errno, path);

  std::string data(static_cast<size_t>(expected), '\0');
  if (absl::Status status = ReadToEnd(fd, path, max_bytes, data); !status.ok()) return status;
  return data;
}

}  // namespace craft
