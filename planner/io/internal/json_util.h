// Helpers shared by craft's JSON readers: parsing with positioned errors and
// typed access to members and arrays whose errors name the offending element.
#ifndef CRAFT_PLANNER_IO_INTERNAL_JSON_UTIL_H_
#define CRAFT_PLANNER_IO_INTERNAL_JSON_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

// Internal to planner/io: the public API is trace_json.h and layout_json.h.
namespace craft::planner::io_internal {

using Json = nlohmann::json;

// Parses `text`, which must hold one JSON object. Malformed text is
// INVALID_ARGUMENT carrying nlohmann's position (line, column, byte).
absl::StatusOr<Json> ParseJsonObject(absl::string_view text);

// Member `key` of `object`, or nullptr when absent.
const Json* FindMember(const Json& object, absl::string_view key);
// Member `key` of `object`; INVALID_ARGUMENT when absent.
absl::StatusOr<const Json*> GetMember(const Json& object, absl::string_view key);

// A short rendering of `node` for error messages ("1.5", "\"abc\"", "an array").
std::string Describe(const Json& node);

// Prefixes `status`'s message with `path` (the element it is about).
absl::Status AtPath(absl::string_view path, const absl::Status& status);

// `node` as an integer in [min_value, max_value]. The error message reads as a
// continuation of the element's path, e.g. "must be an integer in [1, 64], got 1.5".
absl::StatusOr<int64_t> ToInt(const Json& node, int64_t min_value, int64_t max_value);

// ToInt() of member `key`, with the key named in errors.
absl::StatusOr<int> ReadIntMember(const Json& object, absl::string_view key, int min_value,
                                  int max_value);

// `node` as a string.
absl::StatusOr<std::string> ReadString(const Json& node, absl::string_view path);

// Checks that `node` is an array of `size` entries (of any size when nullopt).
absl::Status CheckArray(const Json& node, absl::string_view path, std::optional<size_t> size);

// An array of integers in [min_value, max_value], of `size` entries when set.
absl::StatusOr<std::vector<int>> ReadIntArray(const Json& node, absl::string_view path,
                                              std::optional<size_t> size, int min_value,
                                              int max_value);

}  // namespace craft::planner::io_internal

#endif  // CRAFT_PLANNER_IO_INTERNAL_JSON_UTIL_H_
