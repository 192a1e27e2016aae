// Status propagation helpers used across craft.
//
//   CRAFT_RETURN_IF_ERROR(Validate(x));
//   CRAFT_ASSIGN_OR_RETURN(Layout layout, ParseLayout(text));
#ifndef CRAFT_COMMON_STATUS_MACROS_H_
#define CRAFT_COMMON_STATUS_MACROS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace craft {

// `status` with `prefix` in front of its message (the code is kept): context
// for an error passed up, e.g. Prefixed(s, "stage 3.1 layer 2: ").
inline absl::Status Prefixed(const absl::Status& status, absl::string_view prefix) {
  if (status.ok()) return status;
  return absl::Status(status.code(), std::string(prefix) + std::string(status.message()));
}

}  // namespace craft

#define CRAFT_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status craft_status_ = (expr);         \
    if (!craft_status_.ok()) return craft_status_; \
  } while (0)

#define CRAFT_STATUS_CONCAT_INNER_(a, b) a##b
#define CRAFT_STATUS_CONCAT_(a, b) CRAFT_STATUS_CONCAT_INNER_(a, b)

#define CRAFT_ASSIGN_OR_RETURN(lhs, expr) \
  CRAFT_ASSIGN_OR_RETURN_IMPL_(CRAFT_STATUS_CONCAT_(craft_statusor_, __LINE__), lhs, expr)

#define CRAFT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CRAFT_COMMON_STATUS_MACROS_H_
