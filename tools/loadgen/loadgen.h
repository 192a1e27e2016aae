// The load generator: many simulated node agents (FakeAgent, one callback
// reactor each, no thread per agent) against one planner, one NodeLoad per
// node per window, aligned to wall time like real workers
// (window id = floor(unix_ms / window_ms), sent when the window ends).
//
//   LoadgenOptions options;
//   options.planner = "127.0.0.1:50051";
//   absl::StatusOr<LoadgenReport> report = RunLoadgen(options, std::cout);
//   PrintReport(*report, std::cout);
//
// Phases: connect every agent and wait for its Welcome; with replans, warm
// up until one apply committed (the move from the initial layout, reported
// apart as warmup_*), then let the traffic drift; measure for
// `duration` (windows, optional periodic Replan RPCs), bracketed by
// GetLayout calls for the planner's windows_ingested and by the lines
// "measure: start" / "measure: end" on `progress` (a driver samples the
// planner's CPU time there); wait up to `drain` for an apply in progress;
// close every stream.
#ifndef CRAFT_TOOLS_LOADGEN_LOADGEN_H_
#define CRAFT_TOOLS_LOADGEN_LOADGEN_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/transport_security.h"
#include "tools/loadgen/apply_recorder.h"
#include "tools/loadgen/replanner.h"

namespace craft::loadgen {

struct LoadgenOptions {
  std::string planner;  // host:port
  // Mutual TLS (one certificate naming every simulated node "node<i>"), or
  // --insecure; the planner's certificate must carry planner_name.
  TransportSecurity security;
  std::string planner_name = "craft-planner";
  int nodes = 512;
  int gpus_per_node = 8;
  // Placement groups: the nodes split evenly into `groups` groups named
  // g0, g1, ... (none named with one group), each with ranks from 0.
  int groups = 1;
  int num_layers = 58;
  int num_experts = 256;
  int top_k = 8;
  int64_t bytes_per_expert = 88080384;
  int window_ms = 1000;
  int64_t tokens_per_gpu = 4096;
  double hot_ratio = 30;
  double jitter = 0.05;
  uint64_t seed = 1;
  absl::Duration stage_delay = absl::ZeroDuration();
  absl::Duration duration = absl::Seconds(60);
  absl::Duration connect_timeout = absl::Seconds(60);
  absl::Duration drain = absl::Seconds(30);
  // TCP connections to the planner; 0: one per agent, as real agents have.
  int connections = 0;
  // Replan RPCs: none when zero.
  absl::Duration replan_every = absl::ZeroDuration();
  bool replan_force = true;
  std::string admin_token;  // read from --admin_token_file
  // With replans: commit one apply before measuring (the move away from the
  // initial layout), reported apart; give up after warmup_timeout.
  bool warmup_apply = true;
  absl::Duration warmup_timeout = absl::Minutes(10);
  // After the warm-up the traffic drifts once (the popularity of seed + 1):
  // other experts are hot, so the measured re-plans have replicas to move.
  bool drift = true;
};

struct LoadgenReport {
  LoadgenOptions options;
  double connect_s = 0;
  double measured_s = 0;
  int64_t gpu_windows_sent = 0;          // during the measurement
  int64_t planner_windows_ingested = 0;  // GetLayout delta over the measurement
  int64_t loads_dropped = 0;
  double window_send_lag_ms = 0;  // worst delay of a window's NodeLoads past its end
  int64_t bad_layouts = 0;
  int agents_failed = 0;  // streams that ended before the loadgen closed them
  std::string first_failure;
  ApplySummary warmup;   // the warm-up apply
  ApplySummary applies;  // during the measurement
  ReplanStats replans;
  double loadgen_cpu_s = 0;  // this process, during the measurement
  int loadgen_threads = 0;
};

// Runs the phases above, logging progress to `progress`. FAILED_PRECONDITION
// when not every agent got a Welcome within connect_timeout; INVALID_ARGUMENT
// for a bad shape.
absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options, std::ostream& progress);

// "key=value" lines, one per number, for drivers to grep.
void PrintReport(const LoadgenReport& report, std::ostream& out);

}  // namespace craft::loadgen

#endif  // CRAFT_TOOLS_LOADGEN_LOADGEN_H_
