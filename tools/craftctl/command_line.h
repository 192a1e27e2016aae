// craftctl's command line: `craftctl COMMAND [flags]`. Abseil parses the
// flags; what craftctl adds is per command:
//
//   - a command takes only its own flags: another of craftctl's flags is an
//     error there, as an unknown one is (a misspelt or misplaced flag must not
//     be silently ignored by a planning tool);
//   - a dash in a flag's name may stand for an underscore, so the dashed
//     spellings craftctl has always documented (--max-moved-fraction) keep
//     working; Abseil itself knows only the declared --max_moved_fraction;
//   - `craftctl COMMAND --help` lists that command's flags.
//
//   const Command plan = {"plan", "a layout", "usage: craftctl plan ...", "One ...",
//                         {"loads", "gpus"}, RunPlan};
//   CRAFT_RETURN_IF_ERROR(ParseCommandFlags(plan, "craftctl", args));
//   return plan.run();
#ifndef CRAFT_TOOLS_CRAFTCTL_COMMAND_LINE_H_
#define CRAFT_TOOLS_CRAFTCTL_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace craft::ctl {

struct Command {
  std::string name;
  // One line for `craftctl --help`.
  std::string summary;
  // The head of its --help: its usage line, then what it does (wrapped).
  std::string usage;
  std::string description;
  // The flags it takes, by their declared (underscore) names, in the order
  // its --help lists them.
  std::vector<std::string> flags;
  // Runs it on the parsed flags.
  absl::Status (*run)();
};

// `args` (the arguments after the command name) with every flag as
// `--declared_name=value`, ready for absl::ParseCommandLine. Flags are
// `--name value`, `--name=value`, or a bare `--name` for a bool flag.
// INVALID_ARGUMENT for an argument that is not a flag, a flag `allowed` does
// not name, a flag given twice, or a missing value; INTERNAL for an allowed
// name that is no registered flag.
absl::StatusOr<std::vector<std::string>> NormalizeFlags(const std::vector<std::string>& args,
                                                        const std::vector<std::string>& allowed);

// Parses `args` as the flags of `command` (NormalizeFlags, then
// absl::ParseCommandLine, which exits 1 with a message on a bad value). Once
// per process.
absl::Status ParseCommandFlags(const Command& command, const std::string& program,
                               const std::vector<std::string>& args);

// `craftctl COMMAND --help`: the command's usage and description, then its
// flags.
std::string CommandHelp(const Command& command);

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_COMMAND_LINE_H_
