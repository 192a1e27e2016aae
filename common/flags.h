// One flag story for every craft binary (docs/flags.md): Abseil parses the
// command line, flag names are spelled with underscores, and `--help` lists
// the binary's own flags and exits 0.
//
//   int main(int argc, char** argv) {
//     const std::vector<char*> positional = craft::ParseFlags(
//         argc, argv, "craft-planner --config PATH (--tls_cert ... | --insecure)");
//     ...
//
// Abseil's own --help lists only the flags defined in a file named after the
// binary (none of craft's: they live in main.cc and common/) and exits 1,
// which is why craft answers --help itself.
#ifndef CRAFT_COMMON_FLAGS_H_
#define CRAFT_COMMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace craft {

// Sets `usage` as the program's usage message and parses argv with
// absl::ParseCommandLine, which exits 1 with a message on an unknown flag or a
// bad value. When an argument asks for help (IsHelpFlag), prints
// FlagsHelp(usage, OwnFlagNames()) to stdout and exits 0 instead. Returns the
// positional arguments, argv[0] first. Call once, before any thread starts.
std::vector<char*> ParseFlags(int argc, char** argv, absl::string_view usage);

// True for --help, -help and -h.
bool IsHelpFlag(absl::string_view arg);

// The flags linked into this binary from craft's own sources, sorted by name;
// Abseil's (--flagfile, --helpfull, ...) are left out.
std::vector<std::string> OwnFlagNames();

// `text` word-wrapped to 100 columns, every line starting with `indent` and
// ending with a newline (a word longer than a line gets a line of its own).
std::string WrapText(absl::string_view text, absl::string_view indent);

// `usage`, then "flags:" and an entry per flag of `names`, in that order:
// `--name` (`--name=default` when the default is not empty or false) and its
// help text, indented and wrapped to 100 columns. A name that is not a
// registered flag is skipped.
std::string FlagsHelp(absl::string_view usage, const std::vector<std::string>& names);

}  // namespace craft

#endif  // CRAFT_COMMON_FLAGS_H_
