// Overrides for a generated YAML config, given as YAML: the local cluster
// writes the planner's config from its options and merges what a caller
// wants different (craft-local-cluster --planner_config).
//
//   MergeYaml("replan: {interval_s: 3600, budget: 2}\n", "{replan: {budget: 4}}")
//     -> replan: {interval_s: 3600, budget: 4}, in block style
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_YAML_MERGE_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_YAML_MERGE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace craft::local_cluster {

// `base` with `overrides` merged over it, key by key: a mapping merges into a
// mapping, anything else (a scalar, a list) replaces what was there. Both
// are YAML mappings; empty `overrides` returns `base` unchanged.
// INVALID_ARGUMENT, naming which, when either does not parse or is not a
// mapping. Thread-safe.
absl::StatusOr<std::string> MergeYaml(absl::string_view base, absl::string_view overrides);

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_YAML_MERGE_H_
