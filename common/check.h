// CRAFT_CHECK: the one way craft states an internal invariant, one that only a
// bug in craft can break (docs/error_policy.md says what crashes, what is
// refused and what is logged):
//
//   CRAFT_CHECK(staged_ && staged_->state.version == version)
//       << "flip to " << version << " without it staged";
//
// When the condition is false: one line to stderr in CRAFT_LOG's format, at
// level F, "check failed: CONDITION: MESSAGE" with the file and line, then
// std::abort() (a core dump, and a restart by whatever supervises the
// process). Unlike assert() it is never compiled out: an invariant broken in
// an optimised build must not run on into undefined behaviour. The message
// is evaluated only when the check fails.
//
// Never for input from outside the process (the network, files, flags): that
// is refused with an absl::Status.
#ifndef CRAFT_COMMON_CHECK_H_
#define CRAFT_COMMON_CHECK_H_

#include <optional>

#include "absl/base/optimization.h"
#include "common/logging.h"

namespace craft::logging_internal {

// The failure line of one CRAFT_CHECK; its destructor writes it and aborts.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  [[noreturn]] ~CheckFailure();

  template <typename T>
  CheckFailure& operator<<(const T& value) {
    if (!has_message_) *line_ << ": ";
    has_message_ = true;
    *line_ << value;
    return *this;
  }

 private:
  std::optional<LogLine> line_;  // reset (written) before aborting
  bool has_message_ = false;
};

// Turns `CheckFailure << ...` into void, the type of the other branch of
// CRAFT_CHECK's conditional. `&` binds looser than `<<`, tighter than `?:`.
struct CheckVoidify {
  void operator&(const CheckFailure&) {}
};

}  // namespace craft::logging_internal

// An expression, so that `if (x) CRAFT_CHECK(y); else ...` means what it says.
#define CRAFT_CHECK(condition)                  \
  ABSL_PREDICT_TRUE(condition)                  \
  ? (void)0                                     \
  : ::craft::logging_internal::CheckVoidify() & \
          ::craft::logging_internal::CheckFailure(__FILE__, __LINE__, #condition)

#endif  // CRAFT_COMMON_CHECK_H_
