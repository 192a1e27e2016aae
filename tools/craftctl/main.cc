// craftctl: plan, evaluate and synthesise expert placements from the command
// line, on recorded or synthetic load traces, and query a running planner.
//
//   craftctl COMMAND [flags]        craftctl COMMAND --help
//
// Exits 0 on success, 1 on an error (a bad flag, file or value, a failed
// call), 2 on a missing or unknown command.
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/flags.h"
#include "tools/craftctl/commands.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || craft::IsHelpFlag(args[0]) || args[0] == "help") {
    // `craftctl help plan` is `craftctl plan --help`.
    if (args.size() == 2 && craft::ctl::FindCommand(args[1]) != nullptr) {
      std::cout << craft::ctl::CommandHelp(*craft::ctl::FindCommand(args[1]));
      return 0;
    }
    std::cout << craft::ctl::Usage();
    return args.empty() ? 2 : 0;
  }
  const craft::ctl::Command* command = craft::ctl::FindCommand(args[0]);
  if (command == nullptr) {
    std::cerr << "craftctl: unknown command '" << args[0] << "'\n" << craft::ctl::Usage();
    return 2;
  }
  const std::vector<std::string> flags(args.begin() + 1, args.end());
  for (const std::string& flag : flags) {
    if (craft::IsHelpFlag(flag)) {
      std::cout << craft::ctl::CommandHelp(*command);
      return 0;
    }
  }
  absl::Status status = craft::ctl::ParseCommandFlags(*command, argv[0], flags);
  if (status.ok()) status = command->run();
  if (!status.ok()) {
    std::cerr << "craftctl " << command->name << ": error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
