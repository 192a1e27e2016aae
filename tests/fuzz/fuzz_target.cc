#include "tests/fuzz/fuzz_target.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"

namespace craft::fuzz {
namespace {

std::atomic<int> report_fd{STDERR_FILENO};

}  // namespace

absl::StatusOr<std::string> SeedToInput(absl::string_view seed) {
  const google::protobuf::Message* prototype = InputMessage();
  if (prototype == nullptr) return std::string(seed);
  std::unique_ptr<google::protobuf::Message> message(prototype->New());
  if (!google::protobuf::TextFormat::ParseFromString(std::string(seed), message.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a text-format ", prototype->GetDescriptor()->full_name()));
  }
  std::string bytes;
  message->SerializeToString(&bytes);
  return bytes;
}

void SetReportFd(int fd) { report_fd.store(fd); }

void Report(absl::string_view text) {
  const int fd = report_fd.load();
  while (!text.empty()) {
    const ssize_t written = ::write(fd, text.data(), text.size());
    if (written <= 0) return;
    text.remove_prefix(static_cast<size_t>(written));
  }
}

namespace internal {

CheckFailure::CheckFailure(const char* file, int line, const char* condition) {
  const char* base = std::strrchr(file, '/');
  stream_ << (base ? base + 1 : file) << ":" << line << ": fuzz invariant failed: " << condition
          << ": ";
}

CheckFailure::~CheckFailure() {
  stream_ << "\n";
  Report(stream_.str());
  std::abort();
}

}  // namespace internal
}  // namespace craft::fuzz
