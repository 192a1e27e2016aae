#include "tools/craftctl/commands.h"

#include <set>
#include <string>

#include "absl/flags/reflection.h"
#include "common/flags.h"
#include "gtest/gtest.h"

namespace craft::ctl {
namespace {

TEST(CommandsTest, EveryCommandTakesOnlyRegisteredFlags) {
  for (const Command& command : Commands()) {
    EXPECT_EQ(FindCommand(command.name), &command);
    EXPECT_NE(command.run, nullptr) << command.name;
    std::set<std::string> seen;
    for (const std::string& flag : command.flags) {
      EXPECT_NE(absl::FindCommandLineFlag(flag), nullptr) << command.name << " --" << flag;
      EXPECT_TRUE(seen.insert(flag).second) << command.name << " lists --" << flag << " twice";
    }
  }
  EXPECT_EQ(FindCommand("frobnicate"), nullptr);
}

TEST(CommandsTest, EveryFlagIsSomeCommands) {
  std::set<std::string> taken;
  for (const Command& command : Commands())
    taken.insert(command.flags.begin(), command.flags.end());
  // tls_reload_s comes with the TLS flags; a one-shot client has nothing to reload.
  for (const std::string& flag : OwnFlagNames()) {
    if (flag == "tls_reload_s") continue;
    EXPECT_EQ(taken.count(flag), 1u) << "no command takes --" << flag;
  }
}

TEST(CommandsTest, UsageNamesEveryCommand) {
  const std::string usage = Usage();
  for (const Command& command : Commands()) {
    EXPECT_NE(usage.find("  " + command.name + " "), std::string::npos) << command.name;
  }
}

}  // namespace
}  // namespace craft::ctl
