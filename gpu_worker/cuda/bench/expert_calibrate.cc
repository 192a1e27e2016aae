// expert_calibrate: measures one expert FFN's time against its token count on
// this GPU and writes the roofline model's calibration file
// (planner/cost/calibration.h) for that expert shape and GPU kind.
//
//   expert_calibrate --hidden 7168 --inter 2048 --out h200_deepseek_v3.yaml
//
// The FFN is the one step_bench runs (moe_emulator.h: cuBLAS bf16 GEMMs,
// each GPU's layer one CUDA graph), so the calibrated model predicts what
// step_bench measures. For every token count n, two groups run: `--few`
// slots and `--many` slots of distinct experts, each slot with n tokens.
// Their difference over (many - few) slots is one slot's time, so neither
// the per-GPU launch cost nor the L2 cache (a lone 38-88 MB expert re-read
// would partly hit it; several do not) leaks into the slot curve; the
// remainder of the few-slot group is the per-GPU constant. The slot curve is
// then fitted by planner::FitSlotCurve, and written both as that smooth knee
// and as the measured curve made monotone, which the model interpolates
// (cuBLAS switches kernels by size, a step the knee cannot follow). The
// emulator has no all-to-all, so
// the dispatch term is written as 0: add the fabric's cost per token there.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/device.h"
#include "gpu_worker/cuda/median.h"
#include "gpu_worker/cuda/moe_emulator.h"
#include "planner/cost/calibration.h"
#include "planner/cost/fit.h"

ABSL_FLAG(int64_t, hidden, 7168, "expert hidden dim (DeepSeek-V3: 7168; Qwen3-235B: 4096)");
ABSL_FLAG(int64_t, inter, 2048, "expert intermediate dim (DeepSeek-V3: 2048; Qwen3-235B: 1536)");
ABSL_FLAG(std::string, tokens,
          "1,2,4,8,16,32,48,64,96,128,192,256,320,384,448,512,640,768,896,1024,1280,1536,"
          "2048,3072,4096,6144,8192,12288,16384",
          "token counts per slot to measure");
ABSL_FLAG(int, few, 4, "slots in the smaller group");
ABSL_FLAG(int, many, 16, "slots in the larger group");
ABSL_FLAG(int, iters, 30, "timed runs per group");
ABSL_FLAG(int, warmup, 5, "untimed runs per group");
ABSL_FLAG(std::string, out, "", "calibration file to write (empty: stdout only)");
ABSL_FLAG(std::string, command, "", "the command line to record in the file's header");

namespace craft::gpu::bench {
namespace {

absl::StatusOr<double> GroupMs(MoeEmulator& emulator, int group) {
  const EmulatedGpu gpu{&emulator, group};
  CRAFT_ASSIGN_OR_RETURN(StepTimes times, MeasureSteps({&gpu, 1}, absl::GetFlag(FLAGS_warmup),
                                                       absl::GetFlag(FLAGS_iters)));
  return times.median_gpu_ms[0];
}

absl::Status Main(int argc, char** argv) {
  const CudaAvailability cuda = ProbeCuda();
  if (cuda.devices <= 0) {
    return absl::FailedPreconditionError(absl::StrCat("no GPU: ", cuda.reason));
  }
  std::vector<int64_t> tokens;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',', absl::SkipEmpty())) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad --tokens entry '", s, "'"));
    }
    tokens.push_back(n);
  }
  const int few = absl::GetFlag(FLAGS_few), many = absl::GetFlag(FLAGS_many);
  if (tokens.size() < 3 || few < 1 || many <= few) {
    return absl::InvalidArgumentError("need >= 3 token counts and 1 <= --few < --many");
  }
  EmulatorOptions options;
  options.shape = {absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_inter)};
  for (int s = 0; s < many; ++s) options.slot_experts.push_back(s);
  options.max_tokens = many * *std::max_element(tokens.begin(), tokens.end());
  CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<MoeEmulator> emulator, MoeEmulator::Create(options));

  std::vector<planner::CurvePoint> points;
  std::vector<double> gpu_fixed;
  std::string table = "tokens  few_ms  many_ms  slot_us  gpu_fixed_us\n";
  for (int64_t n : tokens) {
    std::vector<SlotWork> few_work, many_work;
    for (int s = 0; s < many; ++s) (s < few ? few_work : many_work).push_back({s, n});
    many_work.insert(many_work.begin(), few_work.begin(), few_work.end());
    CRAFT_ASSIGN_OR_RETURN(int few_group, emulator->AddGroup(few_work));
    CRAFT_ASSIGN_OR_RETURN(int many_group, emulator->AddGroup(many_work));
    CRAFT_ASSIGN_OR_RETURN(double few_ms, GroupMs(*emulator, few_group));
    CRAFT_ASSIGN_OR_RETURN(double many_ms, GroupMs(*emulator, many_group));
    const double slot_us = (many_ms - few_ms) * 1000 / (many - few);
    const double fixed_us = few_ms * 1000 - few * slot_us;
    points.push_back({static_cast<double>(n), slot_us});
    gpu_fixed.push_back(fixed_us);
    absl::StrAppendFormat(&table, "%6d %7.4f %8.4f %8.2f %8.2f\n", n, few_ms, many_ms, slot_us,
                          fixed_us);
  }
  CRAFT_ASSIGN_OR_RETURN(planner::CurveFit fit, planner::FitSlotCurve(points));
  planner::Calibration calibration;
  // ProbeCuda's summary is "<count> x <name> (sm_XY)": the name is the GPU kind.
  std::string gpu = cuda.reason;
  if (const size_t x = gpu.find(" x "); x != std::string::npos) gpu = gpu.substr(x + 3);
  if (const size_t sm = gpu.rfind(" (sm_"); sm != std::string::npos) gpu = gpu.substr(0, sm);
  calibration.gpu = gpu;
  calibration.hidden = options.shape.hidden;
  calibration.intermediate = options.shape.inter;
  calibration.params = fit.params;
  calibration.params.gpu_fixed_us = std::max(0.0, Median(gpu_fixed));
  calibration.params.dispatch_us_per_token = 0;
  // The model interpolates the measured curve (made monotone); the smooth fit
  // stays in the file as its summary and slope past the last point.
  calibration.params.curve = planner::MonotoneCurve(points);

  std::string command = absl::GetFlag(FLAGS_command);
  if (command.empty()) command = absl::StrJoin(std::vector<std::string>(argv, argv + argc), " ");
  std::string header = absl::StrFormat(
      "made by: %s\n"
      "expert FFN of step_bench's emulator (cuBLAS bf16, one CUDA graph per GPU), %d vs %d "
      "slots\nfit: max relative error %.1f%%, rms %.1f%% over %d token counts\n"
      "measured (tokens: slot us / smooth fit us):\n",
      command, few, many, 100 * fit.max_relative_error, 100 * fit.rms_relative_error,
      points.size());
  std::string row;
  for (size_t i = 0; i < points.size(); ++i) {
    absl::StrAppendFormat(&row, "%d: %.1f / %.1f  ", static_cast<int64_t>(points[i].tokens),
                          points[i].us, planner::SlotUs(fit.params, points[i].tokens));
    if (i % 4 == 3 || i + 1 == points.size()) {
      absl::StrAppend(&header, "  ", row, "\n");
      row.clear();
    }
  }
  const std::string document = planner::FormatCalibration(calibration, header);
  std::cout << table << document;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    std::ofstream file(out);
    file << document;
    if (!file.flush()) return absl::InternalError(absl::StrCat("cannot write ", out));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace craft::gpu::bench

int main(int argc, char** argv) {
  craft::ParseFlags(argc, argv,
                    "expert_calibrate: one expert FFN's time against its token count, as a "
                    "roofline calibration file\n\n"
                    "usage: expert_calibrate --hidden 7168 --inter 2048 [--out FILE]");
  const absl::Status status = craft::gpu::bench::Main(argc, argv);
  if (!status.ok()) {
    std::cerr << "expert_calibrate: " << status << std::endl;
    return 1;
  }
  return 0;
}
