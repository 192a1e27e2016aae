// Test support: lint exposition text with Prometheus's own checker,
// `promtool check metrics` (Debian package `prometheus`).
//
//   absl::Status lint = testing::PromtoolCheckMetrics(metrics->Serialize());
//   if (absl::IsNotFound(lint)) GTEST_SKIP() << lint.message();
//   EXPECT_TRUE(lint.ok()) << lint;
#ifndef CRAFT_COMMON_PROMTOOL_H_
#define CRAFT_COMMON_PROMTOOL_H_

#include <string>

#include "absl/status/status.h"

namespace craft::testing {

// OK when promtool accepts `text`; NOT_FOUND when promtool is not installed;
// FAILED_PRECONDITION with promtool's findings otherwise.
absl::Status PromtoolCheckMetrics(const std::string& text);

}  // namespace craft::testing

#endif  // CRAFT_COMMON_PROMTOOL_H_
