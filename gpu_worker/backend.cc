#include "gpu_worker/backend.h"

#include "absl/strings/str_cat.h"

namespace craft::gpu_worker {

absl::Status CheckStaged(absl::string_view version, absl::string_view staged) {
  if (staged.empty() || staged != version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "version ", version, " is not staged (staged: ", staged.empty() ? "none" : staged, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckWindowLayouts(const LocalLayout& mine, const RoutingTable& routing) {
  if (routing.num_layers() != mine.num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("routing table has ", routing.num_layers(),
                                                   " layers, version ", mine.version, " has ",
                                                   mine.num_layers()));
  }
  return absl::OkStatus();
}

absl::Status CheckRouterChoices(int layer, int num_layers, absl::Span<const int32_t> topk_ids,
                                int top_k) {
  if (layer < 0 || layer >= num_layers) {
    return absl::OutOfRangeError(
        absl::StrCat("layer ", layer, " is outside the window's ", num_layers, " layers"));
  }
  if (top_k <= 0 || topk_ids.size() % top_k != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(topk_ids.size(), " router choices are not a multiple of top_k ", top_k));
  }
  return absl::OkStatus();
}

}  // namespace craft::gpu_worker
