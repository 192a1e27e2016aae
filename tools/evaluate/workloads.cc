#include "tools/evaluate/workloads.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/synth/synth.h"
#include "tools/craftctl/files.h"

namespace craft::evaluate {
namespace {

planner::SynthOptions SynthFor(const ScaleConfig& config, const ModelShape& model,
                               const SkewProfile& profile) {
  planner::SynthOptions options;
  options.num_layers = model.num_layers;
  options.num_experts = model.num_experts;
  options.top_k = model.top_k;
  options.num_windows = config.num_windows;
  options.tokens_per_window = config.tokens_per_window;
  options.seed = config.seed;
  options.drift = config.drift;
  options.skewed_layer_fraction = profile.skewed_layer_fraction;
  // A token picks an expert at most once, so no expert can exceed E / top_k
  // times the mean: tiny shapes get the profile's ratios capped there.
  const double cap = static_cast<double>(model.num_experts) / model.top_k;
  options.max_hot_ratio = std::min(profile.max_hot_ratio, cap);
  options.min_hot_ratio = std::min(profile.min_hot_ratio, options.max_hot_ratio);
  return options;
}

}  // namespace

absl::StatusOr<std::vector<Workload>> SyntheticWorkloads(const ScaleConfig& config) {
  if (config.num_windows < 2) {
    return absl::InvalidArgumentError("synthetic workloads need at least two windows");
  }
  std::vector<Workload> workloads;
  for (const ModelShape& model : config.models) {
    for (const SkewProfile& profile : config.profiles) {
      Workload workload;
      workload.key = absl::StrCat(model.key, "-", profile.key);
      workload.model = model.name;
      workload.description = absl::StrCat(profile.key, " skew: ", profile.description);
      workload.profile = profile.key;
      workload.synthetic = true;
      workload.gpu_counts = model.gpu_counts;
      workload.non_expert_bytes = model.non_expert_bytes;
      CRAFT_ASSIGN_OR_RETURN(workload.trace,
                             planner::SynthesizeTrace(SynthFor(config, model, profile)));
      const int half = config.num_windows / 2;
      workload.plan = workload.trace.SliceWindows(0, half);
      workload.eval = workload.trace.SliceWindows(half, config.num_windows);
      workloads.push_back(std::move(workload));
    }
  }
  return workloads;
}

absl::StatusOr<std::vector<Workload>> RealWorkloads(const ScaleConfig& config,
                                                    const std::string& dir,
                                                    std::vector<std::string>& skipped) {
  std::vector<Workload> workloads;
  for (const RealTrace& real : config.real_traces) {
    const std::string path = (std::filesystem::path(dir) / real.file).string();
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error)) {
      skipped.push_back(path);
      continue;
    }
    Workload workload;
    CRAFT_ASSIGN_OR_RETURN(workload.trace, ctl::LoadTraceFile(path));
    workload.key = real.key;
    workload.model = real.model;
    workload.profile = "recorded";
    workload.description = absl::StrCat("recorded SGLang counts of ", real.model,
                                        " (aggregate only: planned and replayed on it)");
    for (int gpus : real.gpu_counts) {
      const int experts = workload.trace.num_experts();
      if (experts % gpus == 0 && experts / gpus >= 2) workload.gpu_counts.push_back(gpus);
    }
    workload.plan = workload.trace;
    workload.eval = workload.trace;
    workloads.push_back(std::move(workload));
  }
  return workloads;
}

std::vector<double> HotRatios(const planner::LoadTrace& trace) {
  std::vector<double> ratios;
  for (int l = 0; l < trace.num_layers(); ++l) {
    const auto counts = trace.aggregate(l);
    const int64_t total = trace.LayerTotal(l);
    const int64_t hottest = *std::max_element(counts.begin(), counts.end());
    ratios.push_back(total > 0 ? static_cast<double>(hottest) * counts.size() / total : 1.0);
  }
  return ratios;
}

}  // namespace craft::evaluate
