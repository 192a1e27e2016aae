// A small command-line flag reader for craftctl's subcommands: every
// subcommand names the flags it takes, and anything else is an error (a
// misspelt flag must not be silently ignored by a planning tool).
#ifndef CRAFT_TOOLS_CRAFTCTL_ARGS_H_
#define CRAFT_TOOLS_CRAFTCTL_ARGS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace craft::ctl {

// Flags as `--name value`, `--name=value` or a bare `--name` (a switch).
//
//   Args args = Args::Parse(argc, argv).value();
//   auto gpus = args.Int("gpus");       // required
//   int nodes = args.IntOr("nodes", 1);
//   absl::Status done = args.CheckAllUsed();
class Args {
 public:
  // `switches` are flags that take no value.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::vector<std::string>& switches);

  bool Has(absl::string_view name) const;
  absl::StatusOr<std::string> String(absl::string_view name);
  std::string StringOr(absl::string_view name, absl::string_view fallback);
  absl::StatusOr<int> Int(absl::string_view name);
  absl::StatusOr<int> IntOr(absl::string_view name, int fallback);
  absl::StatusOr<double> DoubleOr(absl::string_view name, double fallback);
  absl::StatusOr<std::vector<int>> IntListOr(absl::string_view name, std::vector<int> fallback);
  std::vector<std::string> ListOr(absl::string_view name, std::vector<std::string> fallback);
  bool Switch(absl::string_view name);

  // INVALID_ARGUMENT naming the first flag no accessor asked for.
  absl::Status CheckAllUsed() const;

 private:
  std::optional<std::string> Take(absl::string_view name);

  std::map<std::string, std::string, std::less<>> values_;
  std::map<std::string, bool, std::less<>> used_;
};

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_ARGS_H_
