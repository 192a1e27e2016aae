#include "gpu_worker/worker_shape.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace craft::gpu_worker {
namespace {

absl::Status CheckRange(const char* name, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be in [", low, ", ", high, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WorkerShape::Validate() const {
  CRAFT_RETURN_IF_ERROR(cluster.Validate());
  CRAFT_RETURN_IF_ERROR(CheckRange("gpu", gpu, 0, cluster.num_gpus - 1));
  CRAFT_RETURN_IF_ERROR(CheckRange("num_layers", num_layers, 1, kMaxLayers));
  CRAFT_RETURN_IF_ERROR(CheckRange("num_experts", num_experts, 1, kMaxExperts));
  CRAFT_RETURN_IF_ERROR(CheckRange("top_k", top_k, 1, num_experts));
  return CheckRange("bytes_per_expert", bytes_per_expert, 1, kMaxBytesPerExpert);
}

absl::Status WorkerShape::CheckLayout(const planner::Layout& layout) const {
  return planner::CheckLayoutShape("layout", layout.shape(), "this worker's",
                                   {num_layers, num_experts, cluster.num_gpus, cluster.num_nodes});
}

craft::v1::ModelShape WorkerShape::ModelProto() const {
  craft::v1::ModelShape model;
  model.set_num_layers(num_layers);
  model.set_num_experts(num_experts);
  model.set_top_k(top_k);
  model.set_bytes_per_expert(bytes_per_expert);
  return model;
}

}  // namespace craft::gpu_worker
