// The size of one expert's weights, from the model config.
//
//   ExpertShape deepseek{.hidden = 7168, .inter = 2048};  // 3 x 7168 x 2048 bf16 = 88 MB
//   CRAFT_RETURN_IF_ERROR(deepseek.Validate());
#ifndef CRAFT_GPU_WORKER_CUDA_EXPERT_SHAPE_H_
#define CRAFT_GPU_WORKER_CUDA_EXPERT_SHAPE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace craft::gpu {

enum class ExpertDtype {
  kBf16,  // the only type implemented: fill, checksum and transfer are byte-wise, the GEMMs bf16
};

// An expert is three matrices stored back to back in one buffer, row-major:
// w1 (gate) [hidden x inter], w3 (up) [hidden x inter], w2 (down)
// [inter x hidden]. Keeping them in one buffer is what lets a transfer move
// every tensor of an expert as one unit (a rebalance that moves some tensors
// and not others corrupts output silently).
struct ExpertShape {
  int64_t hidden = 7168;
  int64_t inter = 2048;
  ExpertDtype dtype = ExpertDtype::kBf16;

  static constexpr int64_t kElementBytes = 2;

  int64_t matrix_elements() const { return hidden * inter; }
  int64_t elements() const { return 3 * matrix_elements(); }
  int64_t bytes() const { return elements() * kElementBytes; }

  // Both dims positive and multiples of 8 (so an expert is a whole number of
  // 16-byte vectors, which the fill and checksum kernels read), and at most
  // 2^20 each.
  absl::Status Validate() const;
};

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_EXPERT_SHAPE_H_
