#include "common/check.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace craft {
namespace {

TEST(CheckDeathTest, FailureLogsConditionMessageAndLocationThenAborts) {
  const int slots = 3;
  EXPECT_DEATH(CRAFT_CHECK(slots == 4) << "layer " << 2 << " has " << slots << " slots",
               "^F.* check_test.cc:[0-9]+\\] check failed: slots == 4: layer 2 has 3 slots\n");
}

TEST(CheckDeathTest, FailureWithoutMessage) {
  EXPECT_DEATH(CRAFT_CHECK(1 + 1 == 3), "check_test.cc:[0-9]+\\] check failed: 1 \\+ 1 == 3\n");
}

TEST(CheckTest, PassingCheckEvaluatesConditionOnceAndNotTheMessage) {
  int conditions = 0;
  int messages = 0;
  CRAFT_CHECK(++conditions == 1) << ++messages;
  EXPECT_EQ(conditions, 1);
  EXPECT_EQ(messages, 0);
}

TEST(CheckTest, TakesWhatConvertsToBool) {
  const std::optional<std::string> staged = "1.2";
  const int value = 1;
  const int* const pointer = &value;
  CRAFT_CHECK(staged) << "an optional";
  CRAFT_CHECK(pointer);
}

// A statement that binds to its own `if`, not to a following `else`.
TEST(CheckTest, IsOneStatementUnderIfElse) {
  bool else_taken = false;
  if (false)
    CRAFT_CHECK(false) << "not evaluated";
  else
    else_taken = true;
  EXPECT_TRUE(else_taken);
}

}  // namespace
}  // namespace craft
