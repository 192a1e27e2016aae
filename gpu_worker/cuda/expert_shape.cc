#include "gpu_worker/cuda/expert_shape.h"

#include "absl/strings/str_cat.h"

namespace craft::gpu {

absl::Status ExpertShape::Validate() const {
  constexpr int64_t kMaxDim = int64_t{1} << 20;
  for (const auto& [name, dim] : {std::pair<const char*, int64_t>{"hidden", hidden},
                                  std::pair<const char*, int64_t>{"inter", inter}}) {
    if (dim <= 0 || dim > kMaxDim || dim % 8 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expert ", name, " dim is ", dim, "; must be a positive multiple of 8 up to ", kMaxDim));
    }
  }
  if (dtype != ExpertDtype::kBf16) return absl::UnimplementedError("only bf16 experts");
  return absl::OkStatus();
}

}  // namespace craft::gpu
