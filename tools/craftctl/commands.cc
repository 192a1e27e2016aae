#include "tools/craftctl/commands.h"

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace craft::ctl {
namespace {

using Flags = std::vector<std::string>;

Flags Join(std::initializer_list<Flags> groups) {
  Flags all;
  for (const Flags& group : groups) all.insert(all.end(), group.begin(), group.end());
  return all;
}

// What plan and eval share: the cluster, the algorithm's knobs, the memory model.
const Flags kPlanOptions = {"gpus",
                            "nodes",
                            "groups",
                            "redundant_per_layer",
                            "budget",
                            "candidates",
                            "objective",
                            "calibration",
                            "tokens_per_gpu",
                            "top_k",
                            "no_duplicates",
                            "uniform",
                            "threads",
                            "hbm_gb",
                            "non_expert_gb",
                            "expert_mb",
                            "kv_bytes_per_token"};
const Flags kMoveLimit = {"max_moved_fraction", "max_moved_gb"};
// Reaching a craft gRPC port (common/transport_flags.h for the TLS files).
const Flags kTls = {"tls_cert", "tls_key", "tls_ca", "insecure", "server_name"};
const Flags kQuery = Join({{"planner", "group", "timeout_ms"}, kTls, {"token_file"}});

constexpr char kQueryUsage[] =
    "Against a running planner: --planner HOST:PORT (and --group NAME when it serves several "
    "placement groups), over mutual TLS as a certificate "
    "(--tls_cert, --tls_key, --tls_ca; the planner's must name --server_name), or --insecure "
    "against a demo planner.";

}  // namespace

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"plan", "one algorithm's layout (craft JSON, or SGLang's map)",
       "usage: craftctl plan --loads FILE --gpus D --algorithm none|eplb|craft|craft-paper "
       "[flags]",
       "One algorithm's layout as craft JSON, or SGLang's map with --format sglang. With "
       "--previous it is stabilised against the layout now serving or, with a movement limit "
       "(--max_moved_fraction, --max_moved_gb), planned incrementally from it.",
       Join({{"loads", "algorithm", "out", "format", "previous"},
             kMoveLimit,
             {"num_hidden_layers", "moe_layers"},
             kPlanOptions}),
       RunPlan},
      {"eval", "algorithms and layouts replayed on the same loads, as a table",
       "usage: craftctl eval --loads FILE --gpus D [flags]",
       "Algorithms (and --layouts) replayed on the same loads, as a table: replica memory, "
       "balancedness, the modelled step. With --previous also the replicas each layout moves, "
       "an incremental row and the incremental frontier.",
       Join({{"loads", "algorithms", "layouts", "holdout", "format", "previous"},
             kMoveLimit,
             {"frontier_step"},
             kPlanOptions}),
       RunEval},
      {"synth",
       "a seeded synthetic trace",
       "usage: craftctl synth --out FILE [flags]",
       "A seeded synthetic trace with per-window samples (craft.trace.v1).",
       {"out", "layers", "experts", "top_k", "windows", "tokens_per_window", "seed",
        "skewed_fraction", "min_hot", "max_hot", "drift"},
       RunSynth},
      {"layout", "the committed layout, version, epoch, measured balancedness",
       "usage: craftctl layout [--out FILE] [flags]",
       absl::StrCat("The committed layout, its version and epoch, and the measured balancedness. ",
                    kQueryUsage),
       Join({kQuery, {"out"}}), RunLayout},
      {"agents", "nodes, connection, version, refused windows per node",
       "usage: craftctl agents [flags]",
       absl::StrCat("The nodes, their connection and version, and refused load windows per "
                    "node. ",
                    kQueryUsage),
       kQuery, RunAgents},
      {"explain", "per layer: benefit curve, chosen replicas; the last decision",
       "usage: craftctl explain [flags]",
       absl::StrCat("Per layer: the benefit curve, the chosen replicas and the measured "
                    "balancedness; and why the last re-plan did or did not push. ",
                    kQueryUsage),
       kQuery, RunExplain},
      {"replan", "a re-plan now (admin)", "usage: craftctl replan [--force] [flags]",
       absl::StrCat("A re-plan now. Needs the admin role: an admin certificate, or the token in "
                    "--token_file. ",
                    kQueryUsage),
       Join({kQuery, {"force"}}), RunReplan},
      {"watch", "stream layout changes", "usage: craftctl watch [--count N] [flags]",
       absl::StrCat("The committed layout, then every change. ", kQueryUsage),
       Join({kQuery, {"count"}}), RunWatch},
      {"health", "exit 0 when a craft gRPC port answers SERVING",
       "usage: craftctl health --target HOST:PORT [--server_name NAME] [flags]",
       "Exits 0 when the gRPC server at --target (a planner, or an agent's health port) answers "
       "SERVING; for exec probes, since Kubernetes' own gRPC probes cannot present a "
       "certificate.",
       Join({{"target", "timeout_ms"}, kTls}), RunHealth},
  };
  return kCommands;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

std::string Usage() {
  std::string usage =
      "usage: craftctl COMMAND [flags]\n"
      "       craftctl COMMAND --help   (the command's flags)\n";
  for (const Command& command : Commands()) {
    if (command.name == "plan") usage += "\non load traces:\n";
    if (command.name == "layout") usage += "\nagainst a running planner:\n";
    absl::StrAppendFormat(&usage, "  %-8s %s\n", command.name, command.summary);
  }
  usage +=
      "\nA dash in a flag's name may stand for an underscore (--max-moved-fraction is "
      "--max_moved_fraction).\n";
  return usage;
}

}  // namespace craft::ctl
