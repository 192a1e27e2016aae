#include "tools/craftctl/args.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace craft::ctl {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& switches) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    absl::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--" || arg.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    arg.remove_prefix(2);
    std::string name(arg.substr(0, arg.find('=')));
    std::string value;
    if (arg.find('=') != absl::string_view::npos) {
      value = std::string(arg.substr(arg.find('=') + 1));
    } else if (std::find(switches.begin(), switches.end(), name) != switches.end()) {
      value = "true";
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    if (args.values_.count(name) > 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    args.values_[name] = value;
    args.used_[name] = false;
  }
  return args;
}

bool Args::Has(absl::string_view name) const { return values_.find(name) != values_.end(); }

std::optional<std::string> Args::Take(absl::string_view name) {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  used_.find(name)->second = true;
  return it->second;
}

absl::StatusOr<std::string> Args::String(absl::string_view name) {
  std::optional<std::string> value = Take(name);
  if (!value) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  return *value;
}

std::string Args::StringOr(absl::string_view name, absl::string_view fallback) {
  return Take(name).value_or(std::string(fallback));
}

absl::StatusOr<int> Args::Int(absl::string_view name) {
  std::optional<std::string> value = Take(name);
  if (!value) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  int parsed = 0;
  if (!absl::SimpleAtoi(*value, &parsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " needs an integer, got '", *value, "'"));
  }
  return parsed;
}

absl::StatusOr<int> Args::IntOr(absl::string_view name, int fallback) {
  if (!Has(name)) return fallback;
  return Int(name);
}

absl::StatusOr<double> Args::DoubleOr(absl::string_view name, double fallback) {
  std::optional<std::string> value = Take(name);
  if (!value) return fallback;
  double parsed = 0;
  if (!absl::SimpleAtod(*value, &parsed) || !std::isfinite(parsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " needs a number, got '", *value, "'"));
  }
  return parsed;
}

absl::StatusOr<std::vector<int>> Args::IntListOr(absl::string_view name,
                                                 std::vector<int> fallback) {
  std::optional<std::string> value = Take(name);
  if (!value) return fallback;
  std::vector<int> list;
  for (absl::string_view item : absl::StrSplit(*value, ',', absl::SkipWhitespace())) {
    int parsed = 0;
    if (!absl::SimpleAtoi(item, &parsed)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " needs comma-separated integers, got '", item, "'"));
    }
    list.push_back(parsed);
  }
  return list;
}

std::vector<std::string> Args::ListOr(absl::string_view name, std::vector<std::string> fallback) {
  std::optional<std::string> value = Take(name);
  if (!value) return fallback;
  return absl::StrSplit(*value, ',', absl::SkipWhitespace());
}

bool Args::Switch(absl::string_view name) {
  std::optional<std::string> value = Take(name);
  return value.has_value() && *value != "false";
}

absl::Status Args::CheckAllUsed() const {
  for (const auto& [name, used] : used_) {
    if (!used) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
  }
  return absl::OkStatus();
}

}  // namespace craft::ctl
