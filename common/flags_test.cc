#include "common/flags.h"

#include <algorithm>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, flags_test_threads, 4, "worker threads");
ABSL_FLAG(std::string, flags_test_name, "", "a name");
ABSL_FLAG(bool, flags_test_switch, false,
          "a switch whose help is long enough that it has to be wrapped onto a second line, since "
          "one line of help text stops at one hundred columns");

namespace craft {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(FlagsTest, HelpFlags) {
  EXPECT_TRUE(IsHelpFlag("--help"));
  EXPECT_TRUE(IsHelpFlag("-help"));
  EXPECT_TRUE(IsHelpFlag("-h"));
  EXPECT_FALSE(IsHelpFlag("--helpfull"));
  EXPECT_FALSE(IsHelpFlag("help"));
}

TEST(FlagsTest, OwnFlagsLeaveOutAbseils) {
  const std::vector<std::string> names = OwnFlagNames();
  EXPECT_THAT(names, ::testing::Contains("flags_test_threads"));
  EXPECT_THAT(names, Not(::testing::Contains("flagfile")));
  EXPECT_THAT(names, Not(::testing::Contains("helpfull")));
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(FlagsTest, HelpListsTheNamedFlagsWithTheirDefaults) {
  const std::string help =
      FlagsHelp("usage: tool [flags]",
                {"flags_test_threads", "flags_test_name", "flags_test_switch", "no_such_flag"});
  EXPECT_EQ(help.substr(0, help.find("  --flags_test_switch")),
            "usage: tool [flags]\n"
            "\n"
            "flags:\n"
            "  --flags_test_threads=4\n"
            "      worker threads\n"
            "  --flags_test_name\n"
            "      a name\n");
  EXPECT_THAT(help, HasSubstr("  --flags_test_switch\n      a switch whose help"));
  EXPECT_THAT(help, HasSubstr(" since one\n      line of help text"));
  EXPECT_THAT(help, Not(HasSubstr("no_such_flag")));
  for (absl::string_view line : absl::StrSplit(help, '\n')) EXPECT_LE(line.size(), 100u);
}

}  // namespace
}  // namespace craft
