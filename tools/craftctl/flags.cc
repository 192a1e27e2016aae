#include "tools/craftctl/flags.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "planner/plan.h"
#include "planner/synth/synth.h"

namespace craft::ctl {

bool AbslParseFlag(absl::string_view text, IntList* list, std::string* error) {
  list->values.clear();
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int value = 0;
    if (!absl::SimpleAtoi(item, &value)) {
      *error = absl::StrCat("needs comma-separated integers, got '", item, "'");
      return false;
    }
    list->values.push_back(value);
  }
  return true;
}

std::string AbslUnparseFlag(const IntList& list) { return absl::StrJoin(list.values, ","); }

absl::StatusOr<double> FiniteFlag(const absl::Flag<double>& flag) {
  const double value = absl::GetFlag(flag);
  if (std::isfinite(value)) return value;
  return absl::InvalidArgumentError(absl::StrCat("--", absl::GetFlagReflectionHandle(flag).Name(),
                                                 " needs a number, got ", value));
}

absl::StatusOr<std::optional<double>> FiniteFlag(const absl::Flag<std::optional<double>>& flag) {
  const std::optional<double> value = absl::GetFlag(flag);
  if (!value.has_value() || std::isfinite(*value)) return value;
  return absl::InvalidArgumentError(absl::StrCat("--", absl::GetFlagReflectionHandle(flag).Name(),
                                                 " needs a number, got ", *value));
}

std::vector<std::string> ListFlag(const absl::Flag<std::vector<std::string>>& flag) {
  std::vector<std::string> list;
  for (std::string& item : absl::GetFlag(flag)) {
    if (!item.empty()) list.push_back(std::move(item));
  }
  return list;
}

}  // namespace craft::ctl

namespace {

// The library's defaults, so that the help shows what a plan uses.
const craft::planner::MemoryModel kMemory;
const craft::planner::SynthOptions kSynth;

}  // namespace

ABSL_FLAG(std::string, loads, "",
          "the load trace: SGLang's aggregate counts or craft.trace.v1 (planner/io/FORMATS.md); "
          "required");
ABSL_FLAG(std::string, out, "",
          "the output file. plan: the layout (default -, stdout); synth: the trace (required); "
          "layout: the committed layout as craft JSON (default: none)");
ABSL_FLAG(std::string, format, "",
          "plan: craft (default) or sglang (SGLang's --init-expert-location map); eval: table "
          "(default), csv or json");
ABSL_FLAG(std::string, previous, "",
          "the layout now serving. plan: stabilise against it, or with a movement limit plan "
          "incrementally from it; eval: add the replicas each layout moves, an incremental row "
          "and the incremental frontier");

ABSL_FLAG(std::string, algorithm, "",
          "none | eplb | craft | craft-paper: placement only, DeepSeek EPLB, CRAFT with the exact "
          "knapsack, the paper's heuristic; required unless a movement limit is given (craft)");
ABSL_FLAG(std::optional<int>, gpus, std::nullopt, "GPUs in the cluster, D (required)");
ABSL_FLAG(int, nodes, 1, "nodes; they divide the GPUs, ranks are node-major");
ABSL_FLAG(int, groups, 1,
          "EPLB expert groups: the hierarchical policy when groups % nodes == 0, else global");
ABSL_FLAG(std::optional<int>, redundant_per_layer, std::nullopt,
          "EPLB's and --uniform's redundant slots per layer (default D)");
ABSL_FLAG(std::string, budget, "8",
          "CRAFT's redundant slots per GPU summed over layers (R), or auto: the R with the best "
          "modelled throughput under the memory model (--hbm_gb ...)");
ABSL_FLAG(craft::ctl::IntList, candidates, {},
          "replica counts a layer may take, e.g. 0,1,2,4 (default: every count 0..D up to 128 "
          "GPUs; above, 0..64 and 64 counts spread up to D)");
ABSL_FLAG(std::string, objective, "balancedness",
          "what CRAFT's knapsack maximises: balancedness (the summed gain, the paper's), "
          "step-time (minus the modelled step in tokens) or roofline (minus the roofline model's "
          "step; needs --calibration and --tokens_per_gpu)");
ABSL_FLAG(std::string, calibration, "",
          "--objective roofline: an expert_calibrate file (deploy/calibration/)");
ABSL_FLAG(std::optional<double>, tokens_per_gpu, std::nullopt,
          "--objective roofline: tokens per GPU per step");
ABSL_FLAG(std::optional<int>, top_k, std::nullopt,
          "experts per token (default 8): synth's routing; plan and eval: the roofline regime's");
ABSL_FLAG(bool, no_duplicates, false, "never two replicas of one expert on one GPU");
ABSL_FLAG(bool, uniform, false,
          "CRAFT for stock SGLang and vLLM: E + r slots in every layer, equal on every GPU (r: "
          "--redundant_per_layer)");
ABSL_FLAG(int, threads, 0,
          "threads for the per-layer work; 0: every core. The plan is the same on any count");
ABSL_FLAG(double, hbm_gb, kMemory.hbm_bytes / 1e9, "memory model: usable device memory per GPU");
ABSL_FLAG(double, non_expert_gb, kMemory.non_expert_bytes / 1e9,
          "memory model: attention, dense weights and activations per GPU");
ABSL_FLAG(double, expert_mb, kMemory.bytes_per_expert / 1e6,
          "one expert's weights (memory model, GB/GPU columns, transfer sizes)");
ABSL_FLAG(double, kv_bytes_per_token, kMemory.kv_bytes_per_token,
          "memory model: KV cache per token per GPU");

ABSL_FLAG(std::optional<double>, max_moved_fraction, std::nullopt,
          "with --previous: plan incrementally from it, moving at most this fraction (0 to 1) of "
          "the slots");
ABSL_FLAG(std::optional<double>, max_moved_gb, std::nullopt,
          "with --previous: plan incrementally from it, at most this many GB arriving at any one "
          "GPU");
ABSL_FLAG(std::optional<int>, num_hidden_layers, std::nullopt,
          "--format sglang: the model's decoder layers, dense ones included (default: the "
          "trace's layers, all MoE)");
ABSL_FLAG(std::string, moe_layers, "",
          "--format sglang: which decoder layers are MoE, e.g. 3-60 or 1,3,5 (needs "
          "--num_hidden_layers)");

ABSL_FLAG(std::vector<std::string>, algorithms,
          std::vector<std::string>({"none", "eplb", "craft", "craft-paper"}),
          "the algorithms to compare, comma-separated");
ABSL_FLAG(std::vector<std::string>, layouts, {}, "layout files to compare too, comma-separated");
ABSL_FLAG(double, holdout, 0,
          "plan on the first 1 - F of the windows and replay the last F, in [0, 1); 0: plan and "
          "replay on all");
ABSL_FLAG(double, frontier_step, 0.01,
          "with --previous: print the incremental frontier every this much moved fraction");

ABSL_FLAG(int, layers, kSynth.num_layers, "MoE layers");
ABSL_FLAG(int, experts, kSynth.num_experts, "experts per layer");
ABSL_FLAG(int, windows, kSynth.num_windows, "load windows");
ABSL_FLAG(int, tokens_per_window, kSynth.tokens_per_window, "tokens routed per window and layer");
ABSL_FLAG(int64_t, seed, static_cast<int64_t>(kSynth.seed), "random seed");
ABSL_FLAG(double, skewed_fraction, kSynth.skewed_layer_fraction,
          "share of layers with hot experts");
ABSL_FLAG(double, min_hot, kSynth.min_hot_ratio,
          "a skewed layer's hottest expert: at least this many times the mean load");
ABSL_FLAG(double, max_hot, kSynth.max_hot_ratio, "... and at most this many");
ABSL_FLAG(double, drift, kSynth.drift,
          "per-window random walk of every expert's log-popularity (standard deviation)");

ABSL_FLAG(std::string, planner, "127.0.0.1:7070", "the planner's address, HOST:PORT");
ABSL_FLAG(std::string, group, "",
          "the planner's placement group to ask about; empty: its only group");
ABSL_FLAG(std::string, target, "127.0.0.1:7070",
          "the gRPC port to check, HOST:PORT: the planner's, or an agent's --health_listen");
ABSL_FLAG(int, timeout_ms, 5000, "deadline of the call");
ABSL_FLAG(std::string, server_name, "craft-planner",
          "the DNS name the server's certificate must carry (mutual TLS)");
ABSL_FLAG(std::string, token_file, "",
          "a file holding the bearer token that grants the admin role (Replan)");
ABSL_FLAG(bool, force, false, "bypass the gain gate");
ABSL_FLAG(int, count, 0, "stop after this many layouts; 0: never");
