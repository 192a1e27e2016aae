#include "tools/evaluate/scale.h"

#include "absl/strings/str_cat.h"

namespace craft::evaluate {
namespace {

constexpr double kGb = 1e9;

std::vector<SkewProfile> Profiles() {
  return {
      {"high", "half the layers have 1-3 hot experts, the hottest 10-27x the mean", 0.5, 10.0,
       27.0},
      {"low", "half the layers' hottest expert is 2.5-5x the mean", 0.5, 2.5, 5.0},
  };
}

std::vector<GpuMemory> Gpus() {
  return {{"h200", "H200 (141 GB)", 141 * kGb}, {"a100", "A100-80GB", 80 * kGb}};
}

ScaleConfig FullConfig() {
  ScaleConfig config;
  config.scale = Scale::kFull;
  config.models = {
      {"deepseek", "DeepSeek-R1", 58, 256, 8, {16, 32, 64, 128}, 40 * kGb},
      {"kimi", "Kimi-K2", 60, 384, 8, {16, 32, 48, 64, 96, 128}, 30 * kGb},
  };
  config.profiles = Profiles();
  config.real_traces = {
      {"counts235b.json", "qwen3-235b", "Qwen3-235B-A22B", {16, 32, 64}},
      {"counts30b.json", "qwen3-30b", "Qwen3-30B-A3B", {16, 32, 64}},
      {"counts57b.json", "qwen2-57b", "Qwen2-57B-A14B", {16, 32}},
  };
  config.gpus = Gpus();
  config.num_windows = 400;
  config.tokens_per_window = 4096;
  config.drift = 0.02;
  config.budgets = {0, 1, 2, 4, 8, 16, 32};
  config.focus_budget = 8;
  config.focus_gpus = 64;
  config.drift_periods = 8;
  config.speed_windows = 3000;
  config.speed_repeats = 3;
  return config;
}

// Tiny shapes that exercise every code path in a few seconds.
ScaleConfig SmallConfig() {
  ScaleConfig config;
  config.scale = Scale::kSmall;
  config.models = {
      {"tiny", "tiny-6x32", 6, 32, 4, {8, 16}, 40 * kGb},
      {"tiny48", "tiny-6x48", 6, 48, 4, {8, 16, 24}, 30 * kGb},
  };
  config.profiles = Profiles();
  config.real_traces = {{"counts57b.json", "qwen2-57b", "Qwen2-57B-A14B", {16}}};
  config.gpus = Gpus();
  config.num_windows = 16;
  config.tokens_per_window = 256;
  config.drift = 0.05;
  config.budgets = {0, 1, 2, 4};
  config.focus_budget = 2;
  config.focus_gpus = 16;
  config.drift_periods = 4;
  config.speed_windows = 32;
  config.speed_repeats = 1;
  return config;
}

}  // namespace

absl::StatusOr<Scale> ParseScale(absl::string_view name) {
  if (name == "small") return Scale::kSmall;
  if (name == "full") return Scale::kFull;
  return absl::InvalidArgumentError(
      absl::StrCat("--scale must be small or full, got '", name, "'"));
}

ScaleConfig ConfigFor(Scale scale) { return scale == Scale::kFull ? FullConfig() : SmallConfig(); }

planner::MemoryModel MemoryFor(const ScaleConfig& config, const GpuMemory& gpu,
                               double non_expert_bytes) {
  planner::MemoryModel memory;
  memory.hbm_bytes = gpu.hbm_bytes;
  memory.non_expert_bytes = non_expert_bytes;
  memory.bytes_per_expert = config.bytes_per_expert;
  memory.kv_bytes_per_token = config.kv_bytes_per_token;
  return memory;
}

}  // namespace craft::evaluate
