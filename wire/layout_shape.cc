#include "wire/layout_shape.h"

#include "absl/strings/str_cat.h"

namespace craft {

absl::Status CheckLayoutShape(absl::string_view what, const planner::LayoutShape& actual,
                              absl::string_view expected_what,
                              const planner::LayoutShape& expected) {
  if (actual == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " has shape ", actual.ToString(), "; ",
                                                 expected_what, " is ", expected.ToString()));
}

}  // namespace craft
