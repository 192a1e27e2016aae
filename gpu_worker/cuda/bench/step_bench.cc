// step_bench: a MoE layer's measured step time under several layouts of the
// same skewed trace layer, side by side in one run, against the planner's
// modelled step time (the busiest GPU's tokens) and, with --calibration, the
// roofline model's milliseconds on the same slot tokens (planner/cost).
//
//   step_bench --trace counts235b.json --layouts none=none.json,eplb=eplb.json,craft=craft.json
//
// Layouts are craft.layout.v1 files (`craftctl plan --format craft`), all for
// the same D GPUs; a contiguous layout (expert e on GPU e * D / E, no
// replicas: an engine without load-aware placement) is added first unless
// --contiguous=false. The layer is the one the first layout balances worst
// unless --layer is given; its counts (the aggregate, or --windows summed) are
// scaled to D x tokens_per_gpu x top_k assignments and dispatched over each
// layout's replicas. Each GPU's expert FFNs then run as real cuBLAS GEMMs
// (moe_emulator.h). With fewer physical GPUs than D, every physical GPU runs
// the work of D / P emulated GPUs one after another, each timed alone; the
// step is the slowest emulated GPU, median over iterations.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_io.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "gpu_worker/cuda/bench/step_model.h"
#include "gpu_worker/cuda/device.h"
#include "gpu_worker/cuda/median.h"
#include "gpu_worker/cuda/moe_emulator.h"
#include "planner/cost/calibration.h"
#include "planner/cost/roofline.h"
#include "planner/io/layout_json.h"
#include "planner/io/trace_json.h"

ABSL_FLAG(std::string, trace, "", "trace file (craft.trace.v1 or aggregate counts)");
ABSL_FLAG(std::string, windows, "",
          "trace windows to measure: W or B:E (windows B..E-1 summed); empty: the aggregate");
ABSL_FLAG(std::string, layouts, "", "name=layout.json,... (craft.layout.v1, same GPUs)");
ABSL_FLAG(bool, contiguous, true, "add the contiguous layout as the first (baseline) row");
ABSL_FLAG(int, layer, -1, "layer to measure (-1: the first layout's most imbalanced)");
ABSL_FLAG(std::string, tokens_per_gpu, "4096,256", "tokens per GPU per step, comma-separated");
ABSL_FLAG(int, top_k, 8, "experts per token");
ABSL_FLAG(int64_t, hidden, 4096, "expert hidden dim (Qwen3-235B: 4096; DeepSeek-V3: 7168)");
ABSL_FLAG(int64_t, inter, 1536, "expert intermediate dim (Qwen3-235B: 1536; DeepSeek-V3: 2048)");
ABSL_FLAG(int, iters, 20, "timed steps per layout and round");
ABSL_FLAG(int, warmup, 3, "untimed steps per layout and round");
ABSL_FLAG(int, rounds, 2, "rounds over all layouts (interleaved against drift)");
ABSL_FLAG(int, physical_gpus, 0, "GPUs to run on (0: every visible one, at most D)");
ABSL_FLAG(bool, graph, true, "capture each GPU's layer as a CUDA graph");
ABSL_FLAG(bool, model_only, false, "print the modelled columns only (no GPU needed)");
ABSL_FLAG(std::string, calibration, "",
          "roofline calibration file (expert_calibrate): adds the modelled ms column");

namespace craft::gpu::bench {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read ", text.status().message()));
  return text;
}

struct NamedLayout {
  std::string name;
  planner::LayerPlacement layer;
};

// The work of one emulated GPU under one layout and batch size.
struct Cell {
  int physical = 0;
  std::vector<SlotWork> work;  // slots are indices into the physical GPU's emulator
  int group = 0;
};

absl::Status Main() {
  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  CRAFT_ASSIGN_OR_RETURN(std::string trace_text, ReadFile(trace_path));
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, planner::ParseTraceJson(trace_text));
  const int experts = trace.num_experts();

  std::vector<planner::Layout> files;
  std::vector<std::string> names;
  for (absl::string_view entry :
       absl::StrSplit(absl::GetFlag(FLAGS_layouts), ',', absl::SkipEmpty())) {
    const std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    if (kv.second.empty()) return absl::InvalidArgumentError("--layouts wants name=path,...");
    CRAFT_ASSIGN_OR_RETURN(std::string text, ReadFile(kv.second));
    CRAFT_ASSIGN_OR_RETURN(planner::Layout layout, planner::ParseLayoutJson(text));
    if (layout.num_experts != experts || layout.num_layers() != trace.num_layers() ||
        (!files.empty() && layout.cluster.num_gpus != files[0].cluster.num_gpus)) {
      return absl::InvalidArgumentError(absl::StrCat(kv.second,
                                                     " does not fit the trace or the "
                                                     "other layouts"));
    }
    files.push_back(std::move(layout));
    names.push_back(kv.first);
  }
  if (files.empty()) return absl::InvalidArgumentError("--layouts is empty");
  const int gpus = files[0].cluster.num_gpus;
  // The counts measured: the aggregate, or the sum of windows [begin, end).
  int begin = -1, end = -1;
  const std::string windows = absl::GetFlag(FLAGS_windows);
  if (!windows.empty()) {
    const std::vector<std::string> range = absl::StrSplit(windows, ':');
    if (range.size() > 2 || !absl::SimpleAtoi(range[0], &begin) ||
        !absl::SimpleAtoi(range.back(), &end)) {
      return absl::InvalidArgumentError(absl::StrCat("bad --windows ", windows));
    }
    if (range.size() == 1) ++end;
    if (begin < 0 || end > trace.num_windows() || begin >= end) {
      return absl::InvalidArgumentError(
          absl::StrCat("--windows ", windows, " not within the trace's ", trace.num_windows()));
    }
  }
  const std::string counts_name =
      begin < 0 ? "aggregate" : absl::StrCat("windows ", begin, "-", end - 1);
  const auto counts_of = [&](int layer) {
    std::vector<int64_t> counts(experts, 0);
    for (int w = begin; w < end; ++w) {
      for (int e = 0; e < experts; ++e) counts[e] += trace.window(w, layer)[e];
    }
    if (begin < 0) counts.assign(trace.aggregate(layer).begin(), trace.aggregate(layer).end());
    return counts;
  };

  // The layer: given, or where the first layout is most imbalanced.
  int layer = absl::GetFlag(FLAGS_layer);
  const bool contiguous = absl::GetFlag(FLAGS_contiguous);
  const planner::LayerPlacement contiguous_layer = ContiguousPlacement(experts, gpus);
  if (layer < 0) {
    double worst = 0;
    for (int l = 0; l < trace.num_layers(); ++l) {
      const double imbalance =
          Imbalance(contiguous ? contiguous_layer : files[0].layers[l], experts, counts_of(l));
      if (imbalance > worst) worst = imbalance, layer = l;
    }
  }
  if (layer < 0 || layer >= trace.num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("no layer ", layer));
  }
  std::vector<NamedLayout> layouts;
  if (contiguous) layouts.push_back({"contiguous", contiguous_layer});
  for (size_t i = 0; i < files.size(); ++i) layouts.push_back({names[i], files[i].layers[layer]});

  std::vector<int64_t> batch_sizes;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_tokens_per_gpu), ',', absl::SkipEmpty())) {
    int64_t tokens;
    if (!absl::SimpleAtoi(s, &tokens) || tokens <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad --tokens_per_gpu entry ", s));
    }
    batch_sizes.push_back(tokens);
  }
  const int top_k = absl::GetFlag(FLAGS_top_k);
  const bool model_only = absl::GetFlag(FLAGS_model_only);
  const CudaAvailability cuda = ProbeCuda();
  int physical = absl::GetFlag(FLAGS_physical_gpus);
  physical = std::min(physical > 0 ? physical : model_only ? gpus : cuda.devices, gpus);
  if (physical <= 0 || (!model_only && physical > cuda.devices)) {
    return absl::FailedPreconditionError(absl::StrCat("no GPU to run on: ", cuda.reason));
  }

  // Slots of every physical GPU: each layout's slots of its emulated GPUs
  // g with g mod P = p, in order.
  std::vector<std::vector<int>> slot_experts(physical);
  std::vector<std::vector<int>> slot_base(layouts.size(), std::vector<int>(gpus));
  for (size_t li = 0; li < layouts.size(); ++li) {
    const planner::LayerPlacement& placement = layouts[li].layer;
    for (int g = 0; g < gpus; ++g) {
      std::vector<int>& experts_of_p = slot_experts[g % physical];
      slot_base[li][g] = static_cast<int>(experts_of_p.size());
      const int first = placement.SlotOffset(g);
      for (int s = 0; s < placement.slots_per_gpu[g]; ++s) {
        experts_of_p.push_back(placement.phy2log[first + s]);
      }
    }
  }
  // cells[batch][layout][gpu]
  std::vector<std::vector<std::vector<Cell>>> cells(batch_sizes.size());
  std::vector<int64_t> max_rows(physical, 1);
  std::vector<std::vector<double>> modelled(batch_sizes.size());
  std::vector<std::vector<int64_t>> busiest(batch_sizes.size());
  for (size_t bi = 0; bi < batch_sizes.size(); ++bi) {
    const std::vector<int64_t> scaled =
        ScaleCounts(counts_of(layer), gpus * batch_sizes[bi] * top_k);
    cells[bi].resize(layouts.size());
    for (size_t li = 0; li < layouts.size(); ++li) {
      const planner::LayerPlacement& placement = layouts[li].layer;
      const std::vector<int64_t> slot_tokens = DispatchToSlots(placement, scaled);
      const std::vector<int64_t> gpu_tokens = TokensPerGpu(placement, slot_tokens);
      modelled[bi].push_back(ModelledStep(placement, experts, scaled));
      busiest[bi].push_back(*std::max_element(gpu_tokens.begin(), gpu_tokens.end()));
      for (int g = 0; g < gpus; ++g) {
        Cell cell;
        cell.physical = g % physical;
        const int first = placement.SlotOffset(g);
        for (int s = 0; s < placement.slots_per_gpu[g]; ++s) {
          cell.work.push_back({slot_base[li][g] + s, slot_tokens[first + s]});
        }
        max_rows[cell.physical] = std::max(max_rows[cell.physical], gpu_tokens[g]);
        cells[bi][li].push_back(std::move(cell));
      }
    }
  }

  const ExpertShape shape{absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_inter)};
  // The roofline model's step for each cell, on the very slot tokens run.
  std::vector<std::vector<double>> roofline_ms(batch_sizes.size(),
                                               std::vector<double>(layouts.size(), 0));
  const std::string calibration_path = absl::GetFlag(FLAGS_calibration);
  if (!calibration_path.empty()) {
    CRAFT_ASSIGN_OR_RETURN(planner::Calibration calibration,
                           planner::LoadCalibrationFile(calibration_path));
    if (calibration.hidden != shape.hidden || calibration.intermediate != shape.inter) {
      return absl::InvalidArgumentError(
          absl::StrCat(calibration_path, " is for experts ", calibration.hidden, " x ",
                       calibration.intermediate, ", not ", shape.hidden, " x ", shape.inter));
    }
    for (size_t bi = 0; bi < batch_sizes.size(); ++bi) {
      for (size_t li = 0; li < layouts.size(); ++li) {
        for (const Cell& cell : cells[bi][li]) {
          std::vector<double> tokens;
          for (const SlotWork& w : cell.work) tokens.push_back(static_cast<double>(w.tokens));
          roofline_ms[bi][li] =
              std::max(roofline_ms[bi][li], planner::GpuUs(calibration.params, tokens) / 1000);
        }
      }
    }
  }
  std::vector<std::unique_ptr<MoeEmulator>> emulators;
  for (int p = 0; p < physical && !model_only; ++p) {
    EmulatorOptions options;
    options.device = p;
    options.shape = shape;
    options.layer = layer;
    options.slot_experts = slot_experts[p];
    options.max_tokens = max_rows[p];
    options.use_graph = absl::GetFlag(FLAGS_graph);
    CRAFT_ASSIGN_OR_RETURN(emulators.emplace_back(), MoeEmulator::Create(options));
  }
  for (auto& by_layout : cells) {
    for (auto& by_gpu : by_layout) {
      for (Cell& cell : by_gpu) {
        if (model_only) continue;
        CRAFT_ASSIGN_OR_RETURN(cell.group, emulators[cell.physical]->AddGroup(cell.work));
      }
    }
  }

  // Measure: rounds x batch sizes x layouts, interleaved.
  const int iters = absl::GetFlag(FLAGS_iters);
  const int rounds = model_only ? 0 : absl::GetFlag(FLAGS_rounds);
  std::vector<std::vector<std::vector<double>>> steps(
      batch_sizes.size(), std::vector<std::vector<double>>(layouts.size()));
  std::vector<std::vector<std::vector<double>>> gpu_medians(
      batch_sizes.size(), std::vector<std::vector<double>>(layouts.size()));
  for (int round = 0; round < rounds; ++round) {
    for (size_t bi = 0; bi < batch_sizes.size(); ++bi) {
      for (size_t li = 0; li < layouts.size(); ++li) {
        std::vector<EmulatedGpu> emulated;
        for (const Cell& cell : cells[bi][li]) {
          emulated.push_back({emulators[cell.physical].get(), cell.group});
        }
        CRAFT_ASSIGN_OR_RETURN(StepTimes times,
                               MeasureSteps(emulated, absl::GetFlag(FLAGS_warmup), iters));
        steps[bi][li].insert(steps[bi][li].end(), times.step_ms.begin(), times.step_ms.end());
        if (round == rounds - 1) gpu_medians[bi][li] = times.median_gpu_ms;
      }
    }
  }

  std::cout << absl::StrFormat(
      "step_bench: layer %d of %s (%s), %d experts, top-%d, D = %d GPUs emulated on %d physical "
      "(%s); expert 3 x %d x %d bf16; median of %d steps (%d rounds)\n",
      layer, trace_path, counts_name, experts, top_k, gpus, physical, cuda.reason, shape.hidden,
      shape.inter, iters * rounds, rounds);
  for (size_t bi = 0; bi < batch_sizes.size(); ++bi) {
    std::cout << absl::StrFormat("tokens per GPU %d (%d expert assignments per GPU on average)\n",
                                 batch_sizes[bi], batch_sizes[bi] * top_k);
    std::cout << absl::StrFormat("  %-12s %10s %9s %12s %10s %12s %10s %9s\n", "layout",
                                 "slots/GPU", "imbalance", "busiest tok", "modelled x",
                                 "measured ms", "measured x", "meas/mod");
    const double base_model = modelled[bi][0];
    const double base_ms = Median(steps[bi][0]);
    for (size_t li = 0; li < layouts.size(); ++li) {
      const planner::LayerPlacement& placement = layouts[li].layer;
      const int max_slots =
          *std::max_element(placement.slots_per_gpu.begin(), placement.slots_per_gpu.end());
      const double imbalance =
          modelled[bi][li] / (static_cast<double>(gpus * batch_sizes[bi] * top_k) / gpus);
      const double model_x = base_model / modelled[bi][li];
      const double ms = Median(steps[bi][li]);
      const double measured_x = base_ms / ms;
      const auto measured = [&](double v) {
        return model_only ? std::string("-") : absl::StrFormat("%.3f", v);
      };
      std::cout << absl::StrFormat(
          "  %-12s %4.1f max %2d %9.3f %12d %10.3f %12s %10s %9s\n", layouts[li].name,
          static_cast<double>(placement.num_slots()) / gpus, max_slots, imbalance, busiest[bi][li],
          model_x, measured(ms), measured(measured_x), measured(measured_x / model_x));
      std::string per_gpu;
      for (double g : gpu_medians[bi][li]) absl::StrAppend(&per_gpu, absl::StrFormat("%.3f ", g));
      if (gpus <= 8 && !model_only)
        std::cout << "               per-GPU ms (last round): " << per_gpu << "\n";
      if (!calibration_path.empty()) {
        std::cout << absl::StrFormat(
            "               roofline modelled ms %.3f, measured/modelled %s\n", roofline_ms[bi][li],
            measured(ms / roofline_ms[bi][li]));
      }
      if (model_only) continue;
      std::cout << absl::StrFormat(
          "CSV step_bench,trace=%s,layer=%d,gpus=%d,physical=%d,tokens_per_gpu=%d,layout=%s,"
          "slots=%d,imbalance=%.4f,modelled_tokens=%.1f,modelled_x=%.4f,measured_ms=%.4f,"
          "measured_x=%.4f,roofline_ms=%.4f\n",
          trace_path, layer, gpus, physical, batch_sizes[bi], layouts[li].name,
          placement.num_slots(), imbalance, modelled[bi][li], model_x, ms, measured_x,
          roofline_ms[bi][li]);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace craft::gpu::bench

int main(int argc, char** argv) {
  craft::ParseFlags(argc, argv,
                    "step_bench: a MoE layer's measured step time under several layouts, against "
                    "the modelled one\n\n"
                    "usage: step_bench --trace FILE --layouts name=layout.json,...");
  const absl::Status status = craft::gpu::bench::Main();
  if (!status.ok()) {
    std::cerr << "step_bench: " << status << std::endl;
    return 1;
  }
  return 0;
}
