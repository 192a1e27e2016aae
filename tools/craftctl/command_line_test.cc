#include "tools/craftctl/command_line.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::optional<int>, test_gpus, std::nullopt, "GPUs");
ABSL_FLAG(double, test_max_moved_fraction, 1, "a fraction");
ABSL_FLAG(bool, test_no_duplicates, false, "a switch");

namespace craft::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::string> kAllowed = {"test_gpus", "test_max_moved_fraction",
                                           "test_no_duplicates"};

TEST(NormalizeFlagsTest, EveryFormBecomesNameEqualsValue) {
  auto flags = NormalizeFlags(
      {"--test_gpus", "64", "--test-max-moved-fraction=0.1", "--test-no-duplicates"}, kAllowed);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre("--test_gpus=64", "--test_max_moved_fraction=0.1",
                                  "--test_no_duplicates"));
}

TEST(NormalizeFlagsTest, ValuesAreTakenAsGiven) {
  // A value that looks like a flag, or a negative number, is the value.
  auto flags =
      NormalizeFlags({"--test_max_moved_fraction", "-1", "--test_gpus", "--x-y"}, kAllowed);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre("--test_max_moved_fraction=-1", "--test_gpus=--x-y"));
  flags = NormalizeFlags({"--test_no_duplicates=false"}, kAllowed);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre("--test_no_duplicates=false"));
}

TEST(NormalizeFlagsTest, BadCommandLinesAreErrors) {
  EXPECT_EQ(NormalizeFlags({"--test_gpu", "64"}, kAllowed).status().message(),
            "unknown flag --test_gpu");
  // Another command's flag is as unknown here as a misspelt one.
  EXPECT_EQ(NormalizeFlags({"--test-no-duplicates"}, {"test_gpus"}).status().message(),
            "unknown flag --test-no-duplicates");
  EXPECT_EQ(NormalizeFlags({"plan"}, kAllowed).status().message(), "unexpected argument 'plan'");
  EXPECT_EQ(NormalizeFlags({"-test_gpus", "1"}, kAllowed).status().message(),
            "unexpected argument '-test_gpus'");
  EXPECT_EQ(NormalizeFlags({"--"}, kAllowed).status().message(), "unexpected argument '--'");
  EXPECT_EQ(NormalizeFlags({"--test_gpus"}, kAllowed).status().message(),
            "--test_gpus needs a value");
  EXPECT_EQ(NormalizeFlags({"--test_gpus", "1", "--test-gpus=2"}, kAllowed).status().message(),
            "--test-gpus given twice");
  EXPECT_EQ(NormalizeFlags({"--no_such_flag=1"}, {"no_such_flag"}).status().code(),
            absl::StatusCode::kInternal);
}

TEST(CommandHelpTest, ListsTheCommandsFlagsInItsOrder) {
  const Command command = {"test",
                           "a test",
                           "usage: craftctl test [flags]",
                           "Tests things.",
                           {"test_no_duplicates", "test_gpus"},
                           nullptr};
  const std::string help = CommandHelp(command);
  EXPECT_THAT(help, HasSubstr("usage: craftctl test [flags]\n\nTests things.\n"));
  EXPECT_THAT(help, HasSubstr("A dash in a flag's name may stand for an underscore"));
  EXPECT_LT(help.find("--test_no_duplicates"), help.find("--test_gpus"));
  EXPECT_EQ(help.find("--test_max_moved_fraction"), std::string::npos);
}

}  // namespace
}  // namespace craft::ctl
