// What every fuzz target in tests/fuzz defines, and the helpers they share.
//
// A target is one small file that defines
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
//       feeds `data` to production code. Whatever the bytes, it returns 0
//       and never crashes, hangs or allocates without bound; bad input must
//       come back as an error Status. Where input is accepted it checks an
//       invariant with CRAFT_FUZZ_CHECK.
//   const google::protobuf::Message* craft::fuzz::InputMessage();
//       the message type LLVMFuzzerTestOneInput parses its bytes as, or
//       nullptr when they are text (JSON, YAML). Seeds of a protobuf target
//       are that message in text format, so that they stay reviewable; the
//       runners serialize them, and mutate fields as well as bytes.
//
// The same target links into two binaries (fuzz.bzl): <name>_test, a cc_test
// that runs the seeds and then seeded mutations (fuzz_driver.cc), and <name>,
// a libFuzzer binary (scripts/fuzz.sh).
#ifndef CRAFT_TESTS_FUZZ_FUZZ_TARGET_H_
#define CRAFT_TESTS_FUZZ_FUZZ_TARGET_H_

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace craft::fuzz {

// Defined by each target.
const google::protobuf::Message* InputMessage();

// A checked-in seed as the target's input: the text as it is, or for a
// protobuf target the text-format message serialized.
absl::StatusOr<std::string> SeedToInput(absl::string_view seed);

// Where failure reports go: stderr unless a runner silenced stderr (the code
// under test logs every refusal) and kept the original elsewhere.
void SetReportFd(int fd);
void Report(absl::string_view text);

namespace internal {

// Collects a failed check's message; reports it and aborts when destroyed,
// so that the runner's crash handling saves the input.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

}  // namespace internal
}  // namespace craft::fuzz

// An invariant of accepted input: on failure, reports the condition and the
// streamed message and aborts.
//   CRAFT_FUZZ_CHECK(*reparsed == layout) << "layout JSON does not round-trip";
#define CRAFT_FUZZ_CHECK(condition) \
  while (!(condition)) ::craft::fuzz::internal::CheckFailure(__FILE__, __LINE__, #condition)

#endif  // CRAFT_TESTS_FUZZ_FUZZ_TARGET_H_
