#include "gpu_worker/cuda/moe_emulator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gpu_worker/cuda/expert_hash.h"
#include "gpu_worker/cuda/gpu_test_util.h"
#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

float Bf16ToFloat(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

uint16_t FloatToBf16(float value) {  // round to nearest even; inputs are finite
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

// y = (silu(x w1) * (x w3)) w2 in double, for `rows` rows of x.
std::vector<double> ReferenceFfn(const std::vector<uint16_t>& x, int64_t rows,
                                 const ExpertShape& shape, int layer, int expert) {
  const int64_t h = shape.hidden, n = shape.inter;
  std::vector<uint16_t> w(shape.elements());
  HostFillExpert(layer, expert, w.size(), w.data());
  const auto weight = [&](int64_t matrix, int64_t i) { return Bf16ToFloat(w[matrix * h * n + i]); };
  std::vector<double> y(rows * h, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> act(n);
    for (int64_t j = 0; j < n; ++j) {
      double gate = 0, up = 0;
      for (int64_t k = 0; k < h; ++k) {
        const double xv = Bf16ToFloat(x[r * h + k]);
        gate += xv * weight(0, k * n + j);
        up += xv * weight(1, k * n + j);
      }
      act[j] = gate / (1 + std::exp(-gate)) * up;
    }
    for (int64_t c = 0; c < h; ++c) {
      for (int64_t j = 0; j < n; ++j) y[r * h + c] += act[j] * weight(2, j * h + c);
    }
  }
  return y;
}

double RelativeError(const std::vector<uint16_t>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = Bf16ToFloat(got[i]);
    if (!std::isfinite(g)) return INFINITY;
    diff += (g - want[i]) * (g - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / norm);
}

class MoeEmulatorTest : public ::testing::TestWithParam<bool> {};

TEST_P(MoeEmulatorTest, ExpertOutputsMatchAFloat64Reference) {
  CRAFT_REQUIRE_GPUS(1);
  EmulatorOptions options;
  options.shape = {128, 64};
  options.layer = 1;
  options.slot_experts = {5, 2, 5};
  options.max_tokens = 32;
  options.use_graph = GetParam();
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MoeEmulator> gpu, MoeEmulator::Create(options));
  const int64_t rows = 9;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> x(rows * options.shape.hidden);
  for (uint16_t& v : x) v = FloatToBf16(normal(rng));
  CRAFT_ASSERT_OK(gpu->WriteInput(0, x));
  CRAFT_ASSERT_OK_AND_ASSIGN(int group, gpu->AddGroup({{0, 3}, {1, 0}, {2, 6}}));
  CRAFT_ASSERT_OK(gpu->Run(group).status());
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint16_t> y, gpu->ReadOutput(0, rows));

  // Rows 0-2 went to slot 0 (expert 5), rows 3-8 to slot 2 (expert 5 too);
  // slot 1 had no tokens.
  const std::vector<double> want = ReferenceFfn(x, rows, options.shape, 1, 5);
  EXPECT_LT(RelativeError(y, want), 1e-2);
}

TEST_P(MoeEmulatorTest, DistinctExpertsGiveDistinctOutputs) {
  CRAFT_REQUIRE_GPUS(1);
  EmulatorOptions options;
  options.shape = {64, 32};
  options.slot_experts = {0, 1};
  options.max_tokens = 4;
  options.use_graph = GetParam();
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MoeEmulator> gpu, MoeEmulator::Create(options));
  std::vector<uint16_t> x(4 * 64);
  for (int64_t i = 0; i < 64; ++i) x[i] = x[64 + i] = x[128 + i] = x[192 + i] = FloatToBf16(0.5f);
  CRAFT_ASSERT_OK(gpu->WriteInput(0, x));
  CRAFT_ASSERT_OK_AND_ASSIGN(int group, gpu->AddGroup({{0, 2}, {1, 2}}));
  CRAFT_ASSERT_OK(gpu->Run(group).status());
  CRAFT_ASSERT_OK_AND_ASSIGN(std::vector<uint16_t> y, gpu->ReadOutput(0, 4));
  // Same inputs, different experts: each row matches its own expert's FFN.
  const auto row = [&](int r) {
    return std::vector<uint16_t>(y.begin() + 64 * r, y.begin() + 64 * (r + 1));
  };
  const std::vector<double> expert0 = ReferenceFfn(x, 1, options.shape, 0, 0);
  const std::vector<double> expert1 = ReferenceFfn(x, 1, options.shape, 0, 1);
  EXPECT_LT(RelativeError(row(1), expert0), 1e-2);
  EXPECT_LT(RelativeError(row(2), expert1), 1e-2);
  EXPECT_GT(RelativeError(row(2), expert0), 0.1);
}

INSTANTIATE_TEST_SUITE_P(GraphAndStream, MoeEmulatorTest, ::testing::Bool());

TEST(MeasureStepsTest, TimesEveryGpuAndTakesTheSlowest) {
  CRAFT_REQUIRE_GPUS(1);
  const int physical = std::min(ProbeCuda().devices, 8);
  std::vector<std::unique_ptr<MoeEmulator>> emulators;
  std::vector<EmulatedGpu> gpus;
  for (int p = 0; p < physical; ++p) {
    EmulatorOptions options;
    options.device = p;
    options.shape = {1024, 512};
    options.slot_experts = {0, 1, 2, 3, 4, 5};
    options.max_tokens = 4096;
    CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MoeEmulator> emulator, MoeEmulator::Create(options));
    // Two emulated GPUs per physical one; emulated GPU 0 gets four times the tokens.
    for (int half = 0; half < 2; ++half) {
      const int64_t n = gpus.empty() ? 1024 : 256;
      CRAFT_ASSERT_OK_AND_ASSIGN(
          int group, emulator->AddGroup({{3 * half, n}, {3 * half + 1, n}, {3 * half + 2, n}}));
      gpus.push_back({emulator.get(), group});
    }
    emulators.push_back(std::move(emulator));
  }
  CRAFT_ASSERT_OK_AND_ASSIGN(StepTimes times, MeasureSteps(gpus, 2, 5));
  ASSERT_EQ(times.step_ms.size(), 5u);
  ASSERT_EQ(times.median_gpu_ms.size(), gpus.size());
  for (int i = 0; i < 5; ++i) {
    for (size_t g = 0; g < gpus.size(); ++g) {
      EXPECT_GT(times.gpu_ms[g][i], 0.0);
      EXPECT_LE(times.gpu_ms[g][i], times.step_ms[i]);
    }
  }
  EXPECT_GT(times.median_gpu_ms[0], times.median_gpu_ms[1]);
}

TEST(MoeEmulatorGroupTest, RejectsBadGroups) {
  CRAFT_REQUIRE_GPUS(1);
  EmulatorOptions options;
  options.shape = {64, 32};
  options.slot_experts = {0, 1};
  options.max_tokens = 4;
  CRAFT_ASSERT_OK_AND_ASSIGN(std::unique_ptr<MoeEmulator> gpu, MoeEmulator::Create(options));
  EXPECT_EQ(gpu->AddGroup({{2, 1}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu->AddGroup({{0, 3}, {1, 2}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu->Run(0).status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace craft::gpu
