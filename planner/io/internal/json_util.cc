#include "planner/io/internal/json_util.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::planner::io_internal {

absl::StatusOr<Json> ParseJsonObject(absl::string_view text) {
  Json root;
  // nlohmann reports malformed input only by exception; catch it here so no
  // exception crosses craft's Status-based API.
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // parse_error's what() already says "at line L, column C"; the byte
    // offset helps with single-line files.
    if (const auto* parse_error = dynamic_cast<const Json::parse_error*>(&e)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not valid JSON (byte ", parse_error->byte, "): ", e.what()));
    }
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object at the top level, got ", Describe(root)));
  }
  return root;
}

const Json* FindMember(const Json& object, absl::string_view key) {
  const auto it = object.find(std::string(key));
  return it == object.end() ? nullptr : &*it;
}

absl::StatusOr<const Json*> GetMember(const Json& object, absl::string_view key) {
  const Json* member = FindMember(object, key);
  if (member == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("missing key \"", key, "\""));
  }
  return member;
}

std::string Describe(const Json& node) {
  constexpr size_t kMaxChars = 40;
  if (node.is_array()) return "an array";
  if (node.is_object()) return "an object";
  std::string text = node.dump();
  if (text.size() > kMaxChars) text = absl::StrCat(text.substr(0, kMaxChars), "...");
  return text;
}

absl::Status AtPath(absl::string_view path, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(path, " ", status.message()));
}

absl::StatusOr<int64_t> ToInt(const Json& node, int64_t min_value, int64_t max_value) {
  // Unsigned values above INT64_MAX cannot be in range; reading them as
  // int64_t would wrap.
  const bool in_range =
      node.is_number_integer() &&
      !(node.is_number_unsigned() && node.get<uint64_t>() > static_cast<uint64_t>(max_value)) &&
      node.get<int64_t>() >= min_value && node.get<int64_t>() <= max_value;
  if (!in_range) {
    return absl::InvalidArgumentError(absl::StrCat("must be an integer in [", min_value, ", ",
                                                   max_value, "], got ", Describe(node)));
  }
  return node.get<int64_t>();
}

absl::StatusOr<int> ReadIntMember(const Json& object, absl::string_view key, int min_value,
                                  int max_value) {
  CRAFT_ASSIGN_OR_RETURN(const Json* member, GetMember(object, key));
  absl::StatusOr<int64_t> value = ToInt(*member, min_value, max_value);
  if (!value.ok()) return AtPath(absl::StrCat("\"", key, "\""), value.status());
  return static_cast<int>(*value);
}

absl::StatusOr<std::string> ReadString(const Json& node, absl::string_view path) {
  if (!node.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " must be a string, got ", Describe(node)));
  }
  return node.get<std::string>();
}

absl::Status CheckArray(const Json& node, absl::string_view path, std::optional<size_t> size) {
  if (!node.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " must be an array, got ", Describe(node)));
  }
  if (size.has_value() && node.size() != *size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " has ", node.size(), " entries, expected ", *size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> ReadIntArray(const Json& node, absl::string_view path,
                                              std::optional<size_t> size, int min_value,
                                              int max_value) {
  CRAFT_RETURN_IF_ERROR(CheckArray(node, path, size));
  std::vector<int> values;
  values.reserve(node.size());
  for (size_t i = 0; i < node.size(); ++i) {
    absl::StatusOr<int64_t> value = ToInt(node[i], min_value, max_value);
    if (!value.ok()) return AtPath(absl::StrCat(path, "[", i, "]"), value.status());
    values.push_back(static_cast<int>(*value));
  }
  return values;
}

}  // namespace craft::planner::io_internal
