// craft-loadgen: simulated node agents against one craft-planner, for
// measuring the planner at scale (see tools/loadgen/run_benchmark.sh).
//
//   craft-loadgen --planner 127.0.0.1:50051 --nodes 512 --gpus_per_node 8
//                 --duration_s 60 --replan_every_s 10
//
// Progress goes to stderr, with "measure: start" / "measure: end" around the
// measured phase; the results go to stdout as key=value lines. Exits 1 when
// the agents cannot connect or the planner cannot be queried, 2 on bad flags.
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/token_file.h"
#include "common/transport_flags.h"
#include "tools/loadgen/loadgen.h"

ABSL_FLAG(std::string, planner, "", "the planner's host:port (required)");
ABSL_FLAG(int, nodes, 512, "simulated node agents");
ABSL_FLAG(int, gpus_per_node, 8, "GPUs per node; global ranks are node-major");
ABSL_FLAG(int, groups, 1,
          "placement groups g0, g1, ... the nodes split evenly into (as the planner's config "
          "declares them); 1: the planner's only group");
ABSL_FLAG(int, num_layers, 58, "MoE layers (must match the planner's model)");
ABSL_FLAG(int, num_experts, 256, "experts per layer (must match the planner's model)");
ABSL_FLAG(int, top_k, 8, "experts per token (must match the planner's model)");
ABSL_FLAG(int64_t, bytes_per_expert, 88080384, "must match the planner's model");
ABSL_FLAG(int, window_ms, 1000, "load window length; one NodeLoad per node per window");
ABSL_FLAG(int64_t, tokens_per_gpu, 4096, "tokens per GPU per window through every layer");
ABSL_FLAG(double, hot_ratio, 30, "hottest expert of a skewed layer / mean (capped at E / top_k)");
ABSL_FLAG(double, jitter, 0.05, "relative per-window jitter of every slot count");
ABSL_FLAG(uint64_t, seed, 1, "popularity profile and jitter seed");
ABSL_FLAG(int, stage_delay_ms, 0, "delay before answering Prepare with Ack{PREPARED}");
ABSL_FLAG(double, duration_s, 60, "measured phase");
ABSL_FLAG(double, connect_timeout_s, 60, "how long every agent may take to be welcomed");
ABSL_FLAG(double, drain_s, 30, "after the measurement, wait this long for an apply to finish");
ABSL_FLAG(int, connections, 0, "TCP connections to the planner; 0: one per agent");
ABSL_FLAG(double, replan_every_s, 0, "call PlacementService.Replan this often; 0: never");
ABSL_FLAG(bool, replan_force, true, "Replan with force (bypass the gain gate)");
ABSL_FLAG(bool, warmup_apply, true,
          "with replans: commit one apply (the move from the initial layout) before measuring");
ABSL_FLAG(bool, drift, true,
          "after the warm-up apply, other experts are hot (popularity of --seed + 1), so the "
          "measured re-plans move replicas");
ABSL_FLAG(std::string, admin_token_file, "",
          "a file holding the bearer token for Replan, if the planner has one");
ABSL_FLAG(std::string, planner_name, "craft-planner",
          "the DNS name the planner's certificate must carry (mutual TLS)");

int main(int argc, char** argv) {
  craft::ParseFlags(argc, argv,
                    "craft-loadgen: simulated node agents against one craft-planner\n\n"
                    "usage: craft-loadgen --planner HOST:PORT [--nodes N] [--duration_s S]");
  craft::loadgen::LoadgenOptions options;
  options.planner = absl::GetFlag(FLAGS_planner);
  if (options.planner.empty()) {
    std::cerr << "--planner is required\n";
    return 2;
  }
  options.nodes = absl::GetFlag(FLAGS_nodes);
  options.groups = absl::GetFlag(FLAGS_groups);
  options.gpus_per_node = absl::GetFlag(FLAGS_gpus_per_node);
  options.num_layers = absl::GetFlag(FLAGS_num_layers);
  options.num_experts = absl::GetFlag(FLAGS_num_experts);
  options.top_k = absl::GetFlag(FLAGS_top_k);
  options.bytes_per_expert = absl::GetFlag(FLAGS_bytes_per_expert);
  options.window_ms = absl::GetFlag(FLAGS_window_ms);
  options.tokens_per_gpu = absl::GetFlag(FLAGS_tokens_per_gpu);
  options.hot_ratio = absl::GetFlag(FLAGS_hot_ratio);
  options.jitter = absl::GetFlag(FLAGS_jitter);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.stage_delay = absl::Milliseconds(absl::GetFlag(FLAGS_stage_delay_ms));
  options.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  options.connect_timeout = absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s));
  options.drain = absl::Seconds(absl::GetFlag(FLAGS_drain_s));
  options.connections = absl::GetFlag(FLAGS_connections);
  options.replan_every = absl::Seconds(absl::GetFlag(FLAGS_replan_every_s));
  options.replan_force = absl::GetFlag(FLAGS_replan_force);
  options.warmup_apply = absl::GetFlag(FLAGS_warmup_apply);
  options.drift = absl::GetFlag(FLAGS_drift);
  if (const std::string file = absl::GetFlag(FLAGS_admin_token_file); !file.empty()) {
    absl::StatusOr<std::string> token = craft::ReadTokenFile(file);
    if (!token.ok()) {
      std::cerr << "craft-loadgen: " << token.status().message() << "\n";
      return 2;
    }
    options.admin_token = *std::move(token);
  }
  absl::StatusOr<craft::TransportSecurity> security =
      craft::TransportSecurityFromFlags("craft-loadgen");
  if (!security.ok()) {
    std::cerr << "craft-loadgen: " << security.status().message() << "\n";
    return 2;
  }
  options.security = *std::move(security);
  options.planner_name = absl::GetFlag(FLAGS_planner_name);

  absl::StatusOr<craft::loadgen::LoadgenReport> report =
      craft::loadgen::RunLoadgen(options, std::cerr);
  if (!report.ok()) {
    std::cerr << "craft-loadgen: " << report.status() << "\n";
    return report.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  craft::loadgen::PrintReport(*report, std::cout);
  return 0;
}
