#include "common/flags.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace craft {
namespace {

constexpr int kColumns = 100;
constexpr absl::string_view kHelpIndent = "      ";

}  // namespace

std::string WrapText(absl::string_view text, absl::string_view indent) {
  std::string out;
  std::string line(indent);
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line.size() > indent.size() && line.size() + 1 + word.size() > kColumns) {
      absl::StrAppend(&out, line, "\n");
      line = std::string(indent);
    }
    absl::StrAppend(&line, line.size() > indent.size() ? " " : "", word);
  }
  absl::StrAppend(&out, line, "\n");
  return out;
}

bool IsHelpFlag(absl::string_view arg) { return arg == "--help" || arg == "-help" || arg == "-h"; }

std::vector<std::string> OwnFlagNames() {
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "absl/flags/")) continue;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string FlagsHelp(absl::string_view usage, const std::vector<std::string>& names) {
  std::string out(usage);
  if (!absl::EndsWith(out, "\n")) out += "\n";
  out += "\nflags:\n";
  for (const std::string& name : names) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    const std::string default_value = flag->DefaultValue();
    const bool show_default = !default_value.empty() && default_value != "false";
    absl::StrAppend(&out, "  --", name, show_default ? "=" : "", show_default ? default_value : "",
                    "\n");
    out += WrapText(flag->Help(), kHelpIndent);
  }
  return out;
}

std::vector<char*> ParseFlags(int argc, char** argv, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  for (int i = 1; i < argc; ++i) {
    if (IsHelpFlag(argv[i])) {
      std::cout << FlagsHelp(usage, OwnFlagNames());
      std::exit(std::cout ? 0 : 1);
    }
  }
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace craft
