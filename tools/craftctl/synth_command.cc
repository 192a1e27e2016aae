// craftctl synth --out FILE [--layers L --experts E --top_k K --windows B ...]
#include <iostream>

#include "absl/flags/flag.h"
#include "common/status_macros.h"
#include "planner/io/trace_json.h"
#include "planner/synth/synth.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/files.h"
#include "tools/craftctl/flags.h"

namespace craft::ctl {

absl::Status RunSynth() {
  planner::SynthOptions options;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  options.num_layers = absl::GetFlag(FLAGS_layers);
  options.num_experts = absl::GetFlag(FLAGS_experts);
  options.top_k = absl::GetFlag(FLAGS_top_k).value_or(options.top_k);
  options.num_windows = absl::GetFlag(FLAGS_windows);
  options.tokens_per_window = absl::GetFlag(FLAGS_tokens_per_window);
  options.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  CRAFT_ASSIGN_OR_RETURN(options.skewed_layer_fraction, FiniteFlag(FLAGS_skewed_fraction));
  CRAFT_ASSIGN_OR_RETURN(options.min_hot_ratio, FiniteFlag(FLAGS_min_hot));
  CRAFT_ASSIGN_OR_RETURN(options.max_hot_ratio, FiniteFlag(FLAGS_max_hot));
  CRAFT_ASSIGN_OR_RETURN(options.drift, FiniteFlag(FLAGS_drift));
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, planner::SynthesizeTrace(options));
  std::cerr << "synth: " << trace.num_layers() << " layers x " << trace.num_experts()
            << " experts, " << trace.num_windows() << " windows -> " << out << "\n";
  return WriteFile(out, planner::TraceToJson(trace, options.top_k) + "\n");
}

}  // namespace craft::ctl
