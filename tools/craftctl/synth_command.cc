// craftctl synth --out FILE [--layers L --experts E --top-k K --windows B ...]
#include <iostream>

#include "common/status_macros.h"
#include "planner/io/trace_json.h"
#include "planner/synth/synth.h"
#include "tools/craftctl/commands.h"
#include "tools/craftctl/common.h"

namespace craft::ctl {

absl::Status RunSynth(const std::vector<std::string>& argv) {
  CRAFT_ASSIGN_OR_RETURN(Args args, Args::Parse(argv, {}));
  planner::SynthOptions options;
  CRAFT_ASSIGN_OR_RETURN(std::string out, args.String("out"));
  CRAFT_ASSIGN_OR_RETURN(options.num_layers, args.IntOr("layers", options.num_layers));
  CRAFT_ASSIGN_OR_RETURN(options.num_experts, args.IntOr("experts", options.num_experts));
  CRAFT_ASSIGN_OR_RETURN(options.top_k, args.IntOr("top-k", options.top_k));
  CRAFT_ASSIGN_OR_RETURN(options.num_windows, args.IntOr("windows", options.num_windows));
  CRAFT_ASSIGN_OR_RETURN(options.tokens_per_window,
                         args.IntOr("tokens-per-window", options.tokens_per_window));
  CRAFT_ASSIGN_OR_RETURN(int seed, args.IntOr("seed", static_cast<int>(options.seed)));
  options.seed = static_cast<uint64_t>(seed);
  CRAFT_ASSIGN_OR_RETURN(options.skewed_layer_fraction,
                         args.DoubleOr("skewed-fraction", options.skewed_layer_fraction));
  CRAFT_ASSIGN_OR_RETURN(options.min_hot_ratio, args.DoubleOr("min-hot", options.min_hot_ratio));
  CRAFT_ASSIGN_OR_RETURN(options.max_hot_ratio, args.DoubleOr("max-hot", options.max_hot_ratio));
  CRAFT_ASSIGN_OR_RETURN(options.drift, args.DoubleOr("drift", options.drift));
  CRAFT_RETURN_IF_ERROR(args.CheckAllUsed());
  CRAFT_ASSIGN_OR_RETURN(planner::LoadTrace trace, planner::SynthesizeTrace(options));
  std::cerr << "synth: " << trace.num_layers() << " layers x " << trace.num_experts()
            << " experts, " << trace.num_windows() << " windows -> " << out << "\n";
  return WriteFile(out, planner::TraceToJson(trace, options.top_k) + "\n");
}

}  // namespace craft::ctl
