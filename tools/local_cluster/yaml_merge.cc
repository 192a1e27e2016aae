#include "tools/local_cluster/yaml_merge.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace craft::local_cluster {
namespace {

absl::StatusOr<YAML::Node> LoadMapping(absl::string_view text, absl::string_view what) {
  YAML::Node node;
  try {
    node = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what()));
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a YAML mapping (\"{key: value, ...}\")"));
  }
  return node;
}

void MergeInto(YAML::Node base, const YAML::Node& overrides) {
  for (const auto& entry : overrides) {
    const std::string key = entry.first.as<std::string>();
    // Indexing a yaml-cpp node yields a reference into it.
    YAML::Node slot = base[key];
    if (slot.IsMap() && entry.second.IsMap()) {
      MergeInto(slot, entry.second);
    } else {
      base[key] = entry.second;
    }
  }
}

}  // namespace

absl::StatusOr<std::string> MergeYaml(absl::string_view base, absl::string_view overrides) {
  if (overrides.empty()) return std::string(base);
  absl::StatusOr<YAML::Node> merged = LoadMapping(base, "the base config");
  if (!merged.ok()) return merged.status();
  absl::StatusOr<YAML::Node> changes = LoadMapping(overrides, "the overrides");
  if (!changes.ok()) return changes.status();
  MergeInto(*merged, *changes);
  YAML::Emitter out;
  out << *merged;
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace craft::local_cluster
