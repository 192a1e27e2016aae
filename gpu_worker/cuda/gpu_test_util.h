// Test helpers: skip a test cleanly where too few CUDA devices are usable
// (no GPU, no driver, CUDA_VISIBLE_DEVICES), and status matchers.
#ifndef CRAFT_GPU_WORKER_CUDA_GPU_TEST_UTIL_H_
#define CRAFT_GPU_WORKER_CUDA_GPU_TEST_UTIL_H_

#include "gpu_worker/cuda/device.h"
#include "gtest/gtest.h"

// Skips the current test unless at least `n` CUDA devices are usable.
#define CRAFT_REQUIRE_GPUS(n)                                                       \
  do {                                                                              \
    const ::craft::gpu::CudaAvailability craft_cuda_ = ::craft::gpu::ProbeCuda();   \
    if (craft_cuda_.devices < (n)) {                                                \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s); " << craft_cuda_.reason; \
    }                                                                               \
  } while (0)

#define CRAFT_ASSERT_OK(expr)               \
  do {                                      \
    const ::absl::Status craft_s_ = (expr); \
    ASSERT_TRUE(craft_s_.ok()) << craft_s_; \
  } while (0)

#define CRAFT_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  CRAFT_ASSERT_OK_AND_ASSIGN_IMPL_(CRAFT_TEST_CONCAT_(craft_or_, __LINE__), lhs, expr)
#define CRAFT_TEST_CONCAT_INNER_(a, b) a##b
#define CRAFT_TEST_CONCAT_(a, b) CRAFT_TEST_CONCAT_INNER_(a, b)
#define CRAFT_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  ASSERT_TRUE(statusor.ok()) << statusor.status();            \
  lhs = std::move(statusor).value()

#endif  // CRAFT_GPU_WORKER_CUDA_GPU_TEST_UTIL_H_
