// craft-worker: one GPU's worker (see worker.h). With --backend=cpu it keeps
// expert weights in host memory and moves them over gRPC, so a whole cluster
// can run as processes on one machine. craft-worker-cuda is the same program
// with --backend=cuda linked in: weights in GPU memory, counting on the
// device, layout changes over NCCL.
//
//   craft-worker --backend=cpu --gpu=0 --num_gpus=4 --num_nodes=2 --num_layers=8
//                --num_experts=32 --top_k=4 --agent=unix:/tmp/agent0.sock
//                [--metrics_listen=0.0.0.0:9470]
//   craft-worker-cuda --backend=cuda --expert_hidden=7168 --expert_inter=2048
//                --expert_bytes=88080384 --memory_bytes=42949672960 ...
//
// Exits 0 on SIGTERM or SIGINT after a graceful shutdown, 2 on bad flags, 1 on
// other errors.
#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/file_io.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/shutdown_signals.h"
#include "common/status_macros.h"
#include "common/transport_flags.h"
#include "gpu_worker/backend_factory.h"
#include "gpu_worker/fault_injection.h"
#include "gpu_worker/traffic.h"
#include "gpu_worker/worker.h"
#include "gpu_worker/worker_metrics.h"
#include "planner/io/trace_json.h"

ABSL_FLAG(std::string, backend, "cpu", "device backend: cpu, or cuda in craft-worker-cuda");
ABSL_FLAG(int, gpu, 0, "this worker's global GPU rank");
ABSL_FLAG(int, num_gpus, 1, "GPUs in the cluster (ranks are node-major)");
ABSL_FLAG(int, num_nodes, 1, "nodes in the cluster");
ABSL_FLAG(int, num_layers, 4, "MoE layers of the model");
ABSL_FLAG(int, num_experts, 16, "logical experts per layer");
ABSL_FLAG(int, top_k, 2, "experts per token");
ABSL_FLAG(int64_t, expert_bytes, 4096, "bytes of one expert's weights");
ABSL_FLAG(int64_t, memory_bytes, int64_t{1} << 30,
          "expert memory of this GPU (serving plus staging; reported to the agent)");
ABSL_FLAG(int64_t, expert_hidden, 0, "cuda: hidden size of an expert's matrices");
ABSL_FLAG(int64_t, expert_inter, 0, "cuda: intermediate size of an expert's matrices");
ABSL_FLAG(int, cuda_device, -1, "cuda: device index on this host; -1: --gpu modulo the devices");
ABSL_FLAG(int64_t, transfer_timeout_ms, 60000,
          "cuda: deadline of joining the NCCL transfer group and of one transfer");
ABSL_FLAG(std::string, agent, "", "the node agent's socket, unix:PATH; empty: standalone");
ABSL_FLAG(std::string, transfer_listen, "127.0.0.1:0", "ExpertTransfer server address");
ABSL_FLAG(std::string, transfer_advertise_host, "",
          "host peers reach the transfer server at (default: the listen host)");
ABSL_FLAG(int64_t, transfer_chunk_bytes, 64 << 10, "bytes per ExpertChunk");
ABSL_FLAG(int64_t, window_ms, 1000, "load window length (windows align on wall time)");
ABSL_FLAG(int, tokens_per_window, 512, "tokens of the whole cluster per window");
ABSL_FLAG(std::string, trace, "", "craft or SGLang trace JSON: expert popularity per window");
ABSL_FLAG(double, skew, 0,
          "synthetic popularity without --trace: hottest/mean expert load in skewed layers "
          "(1 = uniform; 0 = the default, 4)");
ABSL_FLAG(uint64_t, seed, 1, "traffic seed, the same on every worker of a cluster");
ABSL_FLAG(int64_t, fetch_timeout_ms, 5000, "deadline of one expert fetch");
ABSL_FLAG(int64_t, verify_interval_ms, 0,
          "re-verify serving checksums this often (0: at start and after every flip)");
ABSL_FLAG(bool, log_windows, false, "log every window's per-layer token totals");
ABSL_FLAG(std::string, ready_file, "",
          "write 'transfer_port=<port>' here (atomically) once the transfer server listens");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics on GET http://<this address>/metrics, e.g. 0.0.0.0:9470 "
          "(port 0 picks one; the ready file gets 'metrics_port=<port>'); empty: no metrics");
ABSL_FLAG(bool, exit_on_prepare, false, "fault: exit with status 3 when a prepare starts staging");
ABSL_FLAG(double, fail_prepare_probability, 0, "fault: fail a prepare with this probability");
ABSL_FLAG(int64_t, stage_delay_ms, 0, "fault: wait this long before staging a prepare");
ABSL_FLAG(bool, corrupt_transfers, false, "fault: serve corrupted expert bytes to peers");

namespace craft::gpu_worker {
namespace {

constexpr double kDefaultSkew = 4;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot open ", text.status().message()));
  return text;
}

absl::StatusOr<Popularity> PopularityFromFlags(const WorkerShape& shape) {
  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  const double skew = absl::GetFlag(FLAGS_skew);
  if (!trace_path.empty() && skew != 0) {
    return absl::InvalidArgumentError("--trace and --skew are exclusive");
  }
  if (trace_path.empty()) {
    if (skew < 0) return absl::InvalidArgumentError("--skew must be positive");
    return Popularity::Synthetic(shape.num_layers, shape.num_experts, shape.top_k,
                                 skew == 0 ? kDefaultSkew : skew, absl::GetFlag(FLAGS_seed));
  }
  CRAFT_ASSIGN_OR_RETURN(const std::string text, ReadFile(trace_path));
  absl::StatusOr<planner::LoadTrace> trace = planner::ParseTraceJson(text);
  if (!trace.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(trace_path, ": ", trace.status().message()));
  }
  return Popularity::FromTrace(*std::move(trace));
}

absl::StatusOr<WorkerOptions> OptionsFromFlags() {
  WorkerOptions options;
  WorkerShape& shape = options.shape;
  shape.gpu = absl::GetFlag(FLAGS_gpu);
  shape.cluster = {absl::GetFlag(FLAGS_num_gpus), absl::GetFlag(FLAGS_num_nodes)};
  shape.num_layers = absl::GetFlag(FLAGS_num_layers);
  shape.num_experts = absl::GetFlag(FLAGS_num_experts);
  shape.top_k = absl::GetFlag(FLAGS_top_k);
  shape.bytes_per_expert = absl::GetFlag(FLAGS_expert_bytes);
  CRAFT_RETURN_IF_ERROR(shape.Validate());
  options.agent = absl::GetFlag(FLAGS_agent);
  options.transfer_listen = absl::GetFlag(FLAGS_transfer_listen);
  options.transfer_advertise_host = absl::GetFlag(FLAGS_transfer_advertise_host);
  options.transfer_chunk_bytes = absl::GetFlag(FLAGS_transfer_chunk_bytes);
  if (options.transfer_chunk_bytes < 1 || options.transfer_chunk_bytes > (1 << 20)) {
    return absl::InvalidArgumentError("--transfer_chunk_bytes must be in [1, 1 MiB]");
  }
  options.window = absl::Milliseconds(absl::GetFlag(FLAGS_window_ms));
  options.fetch_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_fetch_timeout_ms));
  options.verify_interval = absl::Milliseconds(absl::GetFlag(FLAGS_verify_interval_ms));
  options.log_windows = absl::GetFlag(FLAGS_log_windows);
  options.ready_file = absl::GetFlag(FLAGS_ready_file);
  return options;
}

// The fault flags: a worker that fails on purpose, for tests and demos.
absl::StatusOr<FaultOptions> FaultsFromFlags() {
  FaultOptions faults;
  faults.exit_on_prepare = absl::GetFlag(FLAGS_exit_on_prepare);
  faults.fail_prepare_probability = absl::GetFlag(FLAGS_fail_prepare_probability);
  faults.seed = absl::GetFlag(FLAGS_seed);
  faults.stage_delay = absl::Milliseconds(absl::GetFlag(FLAGS_stage_delay_ms));
  faults.corrupt_served = absl::GetFlag(FLAGS_corrupt_transfers);
  CRAFT_RETURN_IF_ERROR(faults.Validate());
  return faults;
}

// Everything that can fail before the worker runs: INVALID_ARGUMENT is a flag
// problem. `ready_extra` goes into the ready file.
absl::StatusOr<std::unique_ptr<Worker>> BuildWorker(const std::string& ready_extra) {
  CRAFT_ASSIGN_OR_RETURN(WorkerOptions options, OptionsFromFlags());
  options.ready_extra = ready_extra;
  CRAFT_ASSIGN_OR_RETURN(options.security, TransportSecurityFromFlags("craft-worker"));
  BackendOptions backend_options;
  backend_options.bytes_per_expert = options.shape.bytes_per_expert;
  backend_options.capacity_bytes = absl::GetFlag(FLAGS_memory_bytes);
  backend_options.gpu = options.shape.gpu;
  backend_options.num_gpus = options.shape.cluster.num_gpus;
  backend_options.device = absl::GetFlag(FLAGS_cuda_device);
  backend_options.expert_hidden = absl::GetFlag(FLAGS_expert_hidden);
  backend_options.expert_inter = absl::GetFlag(FLAGS_expert_inter);
  backend_options.transfer_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_transfer_timeout_ms));
  backend_options.security = options.security;
  CRAFT_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                         MakeBackend(absl::GetFlag(FLAGS_backend), backend_options));
  CRAFT_ASSIGN_OR_RETURN(const FaultOptions faults, FaultsFromFlags());
  backend = WithFaults(std::move(backend), faults, Clock::Real(), {options.fetch_timeout});
  CRAFT_ASSIGN_OR_RETURN(Popularity popularity, PopularityFromFlags(options.shape));
  TrafficOptions traffic_options;
  traffic_options.tokens_per_window = absl::GetFlag(FLAGS_tokens_per_window);
  traffic_options.top_k = options.shape.top_k;
  traffic_options.seed = absl::GetFlag(FLAGS_seed);
  CRAFT_ASSIGN_OR_RETURN(TrafficGenerator traffic,
                         TrafficGenerator::Create(traffic_options, std::move(popularity)));
  return Worker::Create(std::move(options), std::move(backend), std::move(traffic), Clock::Real());
}

int Run(const sigset_t& signals) {
  // Metrics first: a port that cannot be bound fails the start.
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> started =
        metrics::MetricsServer::Start(listen);
    if (!started.ok()) {
      std::cerr << "craft-worker: error: " << started.status().message() << "\n";
      return 1;
    }
    metrics_server = *std::move(started);
  }
  absl::StatusOr<std::unique_ptr<Worker>> worker =
      BuildWorker(metrics::ReadyFileLine(metrics_server.get()));
  if (!worker.ok()) {
    std::cerr << "craft-worker: error: " << worker.status().message() << "\n";
    return worker.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto metrics =
      std::make_shared<WorkerMetrics>(absl::GetFlag(FLAGS_gpu), absl::GetFlag(FLAGS_expert_bytes),
                                      absl::GetFlag(FLAGS_memory_bytes));
  if (metrics_server != nullptr) metrics_server->Register(metrics);
  if (absl::Status started = (*worker)->Start(); !started.ok()) {
    std::cerr << "craft-worker: error: " << started.message() << "\n";
    return 1;
  }
  metrics->Watch(worker->get());  // after Start: scrapes then see a complete worker
  int signal = 0;
  sigwait(&signals, &signal);
  CRAFT_LOG(INFO) << "received signal " << signal << ": shutting down";
  (*worker)->Shutdown();
  metrics->Watch(nullptr);  // before the worker goes away
  CRAFT_LOG(INFO) << "shut down";
  return 0;
}

}  // namespace
}  // namespace craft::gpu_worker

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so every thread
  // inherits the mask and only sigwait() in Run() receives them.
  const sigset_t signals = craft::BlockShutdownSignals();

  const std::vector<char*> positional = craft::ParseFlags(
      argc, argv,
      "craft-worker: one GPU's expert slots, load windows and transfers\n\n"
      "usage: craft-worker --gpu RANK --agent unix:PATH [--backend cpu|cuda] [--num_gpus D ...]\n"
      "                    (--tls_cert PEM --tls_key PEM --tls_ca PEM | --insecure)");
  if (positional.size() > 1) {
    std::cerr << "craft-worker: error: unexpected argument '" << positional[1] << "'\n";
    return 2;
  }
  return craft::gpu_worker::Run(signals);
}
