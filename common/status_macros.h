// Status propagation helpers used across craft.
//
//   CRAFT_RETURN_IF_ERROR(Validate(x));
//   CRAFT_ASSIGN_OR_RETURN(Layout layout, ParseLayout(text));
#ifndef CRAFT_COMMON_STATUS_MACROS_H_
#define CRAFT_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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
