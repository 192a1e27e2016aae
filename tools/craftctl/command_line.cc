#include "tools/craftctl/command_line.h"

#include <algorithm>
#include <set>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/flags.h"

namespace craft::ctl {

absl::StatusOr<std::vector<std::string>> NormalizeFlags(const std::vector<std::string>& args,
                                                        const std::vector<std::string>& allowed) {
  std::vector<std::string> flags;
  std::set<std::string> seen;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "--") || arg.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", args[i], "'"));
    }
    const size_t equals = arg.find('=');
    const absl::string_view name = arg.substr(0, equals);
    const std::string declared = absl::StrReplaceAll(name, {{"-", "_"}});
    if (std::find(allowed.begin(), allowed.end(), declared) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!seen.insert(declared).second) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(declared);
    if (flag == nullptr) {
      return absl::InternalError(
          absl::StrCat("craftctl takes --", declared, " but defines no such flag"));
    }
    if (equals != absl::string_view::npos) {
      flags.push_back(absl::StrCat("--", declared, arg.substr(equals)));
    } else if (flag->IsOfType<bool>()) {
      flags.push_back(absl::StrCat("--", declared));
    } else if (i + 1 < args.size()) {
      flags.push_back(absl::StrCat("--", declared, "=", args[++i]));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
  }
  return flags;
}

absl::Status ParseCommandFlags(const Command& command, const std::string& program,
                               const std::vector<std::string>& args) {
  absl::StatusOr<std::vector<std::string>> flags = NormalizeFlags(args, command.flags);
  if (!flags.ok()) {
    return absl::Status(flags.status().code(),
                        absl::StrCat(flags.status().message(), " (craftctl ", command.name,
                                     " --help lists its flags)"));
  }
  std::vector<std::string> strings = {program};
  strings.insert(strings.end(), flags->begin(), flags->end());
  std::vector<char*> argv;
  for (std::string& s : strings) argv.push_back(s.data());
  // Every argument is a known flag in `--name=value` form now: nothing is
  // left positional, and what Abseil refuses is a value (it says which).
  absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  return absl::OkStatus();
}

std::string CommandHelp(const Command& command) {
  return FlagsHelp(absl::StrCat(command.usage, "\n\n", WrapText(command.description, ""), "\n",
                                WrapText("A dash in a flag's name may stand for an underscore "
                                         "(--max-moved-fraction is --max_moved_fraction).",
                                         "")),
                   command.flags);
}

}  // namespace craft::ctl
