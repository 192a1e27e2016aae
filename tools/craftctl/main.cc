// craftctl: plan, evaluate and synthesise expert placements from the command
// line, on recorded or synthetic load traces.
#include <iostream>
#include <string>
#include <vector>

#include "tools/craftctl/commands.h"

namespace {

constexpr char kUsage[] = R"(usage: craftctl COMMAND [flags]

commands:
  plan   --loads FILE --gpus D --algorithm none|eplb|craft|craft-paper
         [--nodes N] [--groups G] [--redundant-per-layer r] [--budget R|auto]
         [--candidates 0,1,2,4,...] [--objective balancedness|step-time|roofline]
         [--calibration FILE --tokens-per-gpu N [--top-k K]]  (roofline: modelled ms
         from an expert_calibrate file at N tokens per GPU per step) [--threads N]
         [--no-duplicates] [--previous LAYOUT] [--format craft|sglang] [--out FILE]
         [--uniform]  (craft: E + r slots in every layer, equal on every GPU, as
         SGLang and vLLM need; r = --redundant-per-layer, default D)
         [--max-moved-fraction F] [--max-moved-gb G]  (with --previous: plan
         incrementally from LAYOUT, moving at most F of the slots / G GB into a GPU)
         [--num-hidden-layers N --moe-layers 3-60]  (--format sglang: one row per
         decoder layer, the plan's layers in the MoE rows; default every layer MoE)
  eval   --loads FILE --gpus D [--algorithms none,eplb,craft,craft-paper]
         [--holdout FRACTION] [--layouts A.json,B.json] [--previous LAYOUT]
         [--format table|csv|json] [--max-moved-fraction F] [--max-moved-gb G]
         [--frontier-step 0.01] and the plan flags above; with --previous it adds
         an incremental row and prints the incremental frontier
  synth  --out FILE [--layers 58] [--experts 256] [--top-k 8] [--windows 100]
         [--tokens-per-window 4096] [--seed 1] [--skewed-fraction 0.5]
         [--min-hot 10] [--max-hot 30] [--drift 0.02]

planner queries (--planner HOST:PORT, default 127.0.0.1:7070; --timeout_ms;
  --tls_cert PEM --tls_key PEM --tls_ca PEM [--server_name craft-planner] | --insecure;
  --token_file FILE: a bearer token granting the admin role):
  layout [--out FILE]   committed layout, version, epoch, measured balancedness
  agents                connected agents and their versions
  explain               per-layer benefit curves, chosen replicas, last decision
  replan [--force]      ask for a replan now (admin token if configured)
  watch [--count N]     stream layout changes
  health --target HOST:PORT [--server_name NAME]
                        exit 0 when the planner or an agent health port is SERVING

memory model (plan, eval with --budget auto): --hbm-gb 141 --non-expert-gb 40
  --expert-mb 88.08 --kv-bytes-per-token 70272
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  // `craftctl plan --help` asks for the usage, not for a flag named help.
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  absl::Status status;
  if (command == "plan") {
    status = craft::ctl::RunPlan(args);
  } else if (command == "eval") {
    status = craft::ctl::RunEval(args);
  } else if (command == "synth") {
    status = craft::ctl::RunSynth(args);
  } else if (craft::ctl::IsQueryCommand(command)) {
    status = craft::ctl::RunQuery(command, args);
  } else {
    std::cerr << "craftctl: unknown command '" << command << "'\n" << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "craftctl " << command << ": error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
