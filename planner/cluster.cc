#include "planner/cluster.h"

#include "absl/strings/str_cat.h"

namespace craft::planner {

absl::Status ClusterShape::Validate() const {
  if (num_gpus <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_gpus must be positive, got ", num_gpus));
  }
  if (num_nodes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_nodes must be positive, got ", num_nodes));
  }
  if (num_gpus % num_nodes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_gpus (", num_gpus, ") must be a multiple of num_nodes (", num_nodes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace craft::planner
