#include "tests/integration/local_cluster.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_io.h"
#include "common/grpc/status.h"
#include "grpcpp/grpcpp.h"

namespace craft::testing {
namespace {

// The size of `path`, 0 when it does not exist.
int64_t FileSize(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? info.st_size : 0;
}

// The bytes of `path` from `offset` on, "" when it cannot be read.
std::string ReadFrom(const std::string& path, int64_t offset) {
  return ReadFileToString(path, std::numeric_limits<int64_t>::max(), offset).value_or("");
}

}  // namespace

std::string ProcessName(Role role, int index) {
  switch (role) {
    case Role::kPlanner:
      return index == 0 ? "planner" : absl::StrCat("planner", index);
    case Role::kAgent:
      return absl::StrCat("agent", index);
    case Role::kWorker:
      return absl::StrCat("worker", index);
  }
  return "?";
}

LocalCluster::LocalCluster(ClusterOptions options) : options_(options) {
  char pattern[] = "/tmp/craft-it-XXXXXX";
  dir_ = ::mkdtemp(pattern);
  for (int i = 0; i < options_.planners; ++i) planner_ports_.push_back(FreePort());
  planners_.resize(options_.planners);
  agents_.resize(options_.num_nodes);
  workers_.resize(num_gpus());
  worker_extra_flags_.resize(num_gpus());
  worker_log_offsets_.resize(num_gpus());
  std::vector<std::string> identities = {"craft-planner:127.0.0.1", "ops"};
  for (int node = 0; node < options_.num_nodes; ++node) {
    identities.push_back(absl::StrCat("node", node));
  }
  if (!options_.insecure) {
    absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_ + "/certs", identities);
    if (!certs.ok()) std::abort();  // nothing can start without them
    certs_ = *std::move(certs);
  }
  placement_ = craft::v1::PlacementService::NewStub(ChannelAs("ops"));
}

TransportSecurity LocalCluster::SecurityOf(const std::string& name) const {
  if (options_.insecure) {
    TransportSecurity plaintext;
    plaintext.insecure = true;
    return plaintext;
  }
  return certs_->For(name);
}

std::vector<std::string> LocalCluster::SecurityFlags(const std::string& name) const {
  if (options_.insecure) return {"--insecure"};
  const TransportSecurity security = SecurityOf(name);
  return {"--tls_cert=" + security.cert_file, "--tls_key=" + security.key_file,
          "--tls_ca=" + security.ca_file, "--tls_reload_s=1"};
}

std::shared_ptr<grpc::Channel> LocalCluster::ChannelAs(const std::string& name, int replica) const {
  return MakeChannel(planner_address(replica), SecurityOf(name), "craft-planner");
}

LocalCluster::~LocalCluster() {
  // Workers first, then agents, then the planner: the order a node drains.
  workers_.clear();
  agents_.clear();
  planners_.clear();
  if (std::getenv("CRAFT_KEEP_CLUSTER_DIR") == nullptr) {
    (void)std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }
}

std::string LocalCluster::planner_address(int replica) const {
  return absl::StrCat("127.0.0.1:", planner_ports_[replica]);
}

std::string LocalCluster::planner_addresses() const {
  std::vector<std::string> addresses;
  for (int i = 0; i < options_.planners; ++i) addresses.push_back(planner_address(i));
  return absl::StrJoin(addresses, ",");
}

absl::Status LocalCluster::Start() {
  for (int replica = 0; replica < options_.planners; ++replica) {
    if (absl::Status s = StartPlanner(replica); !s.ok()) return s;
  }
  for (int node = 0; node < options_.num_nodes; ++node) {
    if (absl::Status s = StartAgent(node); !s.ok()) return s;
  }
  for (int gpu = 0; gpu < num_gpus(); ++gpu) {
    if (absl::Status s = StartWorker(gpu); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::StartPlanner(int replica) {
  std::vector<std::string> node_names;
  for (int node = 0; node < options_.num_nodes; ++node) {
    node_names.push_back(absl::StrCat("node", node));
  }
  const std::string name = ProcessName(Role::kPlanner, replica);
  const std::string config = absl::StrCat(dir_, "/", name, ".yaml");
  std::string ha;
  if (!options_.etcd_endpoints.empty()) {
    ha = absl::StrCat("ha:\n  etcd_endpoints: [", options_.etcd_endpoints,
                      "]\n  prefix: /craft/it\n  lease_ttl_s: ", options_.lease_ttl_s,
                      "\n  etcd_timeout_ms: 1000\n  etcd_insecure: true\n");
  }
  std::ofstream(config) << "listen_address: \"" << planner_address(replica) << "\"\n"
                        << ha << "state_path: " << state_path() << "\n"
                        << "model:\n  num_layers: " << options_.num_layers
                        << "\n  num_experts: " << options_.num_experts
                        << "\n  top_k: " << options_.top_k << "\n  bytes_per_expert: 4096\n"
                        << "cluster:\n  num_gpus: " << num_gpus()
                        << "\n  num_nodes: " << options_.num_nodes << "\n"
                        << "security:\n  nodes: [" << absl::StrJoin(node_names, ", ")
                        << "]\n  admins: [ops]\n"
                        << "loads:\n  window_horizon: 16\n"
                        << "replan:\n  interval_s: " << options_.replan_interval_s
                        << "\n  algorithm: craft\n  budget: " << options_.budget
                        << "\n  gain_threshold: 0.01\n"
                        << "apply:\n  timeout_ms: " << options_.apply_timeout_ms << "\n";
  const std::string ready = absl::StrCat(dir_, "/", name, ".ready");
  std::remove(ready.c_str());
  std::vector<std::string> flags = {"--config=" + config, "--ready_file=" + ready};
  if (!options_.etcd_endpoints.empty()) {
    flags.push_back("--advertise_address=" + planner_address(replica));
  }
  for (std::string& flag : SecurityFlags("craft-planner")) flags.push_back(std::move(flag));
  auto process =
      Process::Start(Runfile("server/craft-planner"), flags, absl::StrCat(dir_, "/", name, ".log"),
                     CrashEnv(Role::kPlanner, replica));
  if (!process.ok()) return process.status();
  planners_[replica] = std::make_unique<Process>(std::move(*process));
  return WaitForReadyFile(ready, absl::Seconds(20)).status();
}

absl::Status LocalCluster::StartAgent(int node) {
  std::vector<int> gpus;
  for (int i = 0; i < options_.gpus_per_node; ++i)
    gpus.push_back(node * options_.gpus_per_node + i);
  const std::string ready = absl::StrCat(dir_, "/agent", node, ".ready");
  std::remove(ready.c_str());  // a restart must not find its predecessor's
  std::vector<std::string> flags = {absl::StrCat("--node=node", node),
                                    "--gpus=" + absl::StrJoin(gpus, ","),
                                    absl::StrCat("--socket=", dir_, "/agent", node, ".sock"),
                                    "--planner=" + planner_addresses(),
                                    absl::StrCat("--state_file=", dir_, "/agent", node, ".state"),
                                    "--ready_file=" + ready};
  for (std::string& flag : SecurityFlags(absl::StrCat("node", node))) {
    flags.push_back(std::move(flag));
  }
  if (options_.agent_model_flags) {
    flags.push_back(absl::StrCat("--num_layers=", options_.num_layers));
    flags.push_back(absl::StrCat("--num_experts=", options_.num_experts));
    flags.push_back(absl::StrCat("--top_k=", options_.top_k));
  }
  auto process =
      Process::Start(Runfile("agent/craft-agent"), flags,
                     absl::StrCat(dir_, "/agent", node, ".log"), CrashEnv(Role::kAgent, node));
  if (!process.ok()) return process.status();
  agents_[node] = std::make_unique<Process>(std::move(*process));
  return WaitForReadyFile(ready, absl::Seconds(20)).status();
}

absl::Status LocalCluster::StartWorker(int gpu, const std::vector<std::string>& extra_flags) {
  const int node = gpu / options_.gpus_per_node;
  const std::string ready = absl::StrCat(dir_, "/worker", gpu, ".ready");
  std::remove(ready.c_str());
  std::vector<std::string> flags = {
      "--backend=cpu",
      absl::StrCat("--gpu=", gpu),
      absl::StrCat("--num_gpus=", num_gpus()),
      absl::StrCat("--num_nodes=", options_.num_nodes),
      absl::StrCat("--num_layers=", options_.num_layers),
      absl::StrCat("--num_experts=", options_.num_experts),
      absl::StrCat("--top_k=", options_.top_k),
      absl::StrCat("--agent=unix:", dir_, "/agent", node, ".sock"),
      absl::StrCat("--window_ms=", options_.window_ms),
      absl::StrCat("--tokens_per_window=", options_.tokens_per_window),
      absl::StrCat("--skew=", options_.skew),
      "--seed=7",
      "--verify_interval_ms=300",
      "--ready_file=" + ready};
  for (std::string& flag : SecurityFlags(absl::StrCat("node", node))) {
    flags.push_back(std::move(flag));
  }
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  worker_extra_flags_[gpu] = extra_flags;
  const std::string log = absl::StrCat(dir_, "/worker", gpu, ".log");
  worker_log_offsets_[gpu] = FileSize(log);
  auto process =
      Process::Start(Runfile("gpu_worker/craft-worker"), flags, log, CrashEnv(Role::kWorker, gpu));
  if (!process.ok()) return process.status();
  workers_[gpu] = std::make_unique<Process>(std::move(*process));
  return WaitForReadyFile(ready, absl::Seconds(20)).status();
}

std::vector<std::string> LocalCluster::CrashEnv(Role role, int index) const {
  return {"CRAFT_CRASH_POINTS_FILE=" + crash_file(role, index)};
}

std::string LocalCluster::crash_file(Role role, int index) const {
  return absl::StrCat(dir_, "/", ProcessName(role, index), ".crash");
}

Process* LocalCluster::process(Role role, int index) {
  switch (role) {
    case Role::kPlanner:
      return planners_[index].get();
    case Role::kAgent:
      return agents_[index].get();
    case Role::kWorker:
      return workers_[index].get();
  }
  return nullptr;
}

bool LocalCluster::Running(Role role, int index) {
  Process* p = process(role, index);
  return p != nullptr && p->Running();
}

absl::Status LocalCluster::ArmCrashPoint(Role role, int index, const std::string& point, int hit,
                                         int delay_ms) {
  // Written whole, then renamed: the process may read the file at any time
  // and must never see half a line.
  const std::string path = crash_file(role, index);
  const std::string temp = path + ".tmp";
  std::ofstream(temp) << point << " hit=" << hit << " delay_ms=" << delay_ms << "\n";
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::DisarmCrashPoint(Role role, int index) {
  const std::string path = crash_file(role, index);
  if (!std::ofstream(path, std::ios::trunc)) {
    return absl::InternalError(absl::StrCat("cannot empty ", path));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::Restart(Role role, int index) {
  switch (role) {
    case Role::kPlanner:
      planners_[index].reset();  // SIGKILLs a survivor; a dead one is not signalled
      return StartPlanner(index);
    case Role::kAgent:
      agents_[index].reset();
      return StartAgent(index);
    case Role::kWorker:
      workers_[index].reset();
      return StartWorker(index, worker_extra_flags_[index]);
  }
  return absl::InvalidArgumentError("unknown role");
}

std::string LocalCluster::WorkerServingVersion(int gpu) const {
  static constexpr char kVerified[] = "verify ok version=";
  const std::string path = absl::StrCat(dir_, "/worker", gpu, ".log");
  // The tail first: verify lines come every 300 ms and logs grow with every
  // trial of a long test.
  constexpr int64_t kTail = 64 << 10;
  const int64_t start = worker_log_offsets_[gpu];
  std::string text = ReadFrom(path, std::max(start, FileSize(path) - kTail));
  size_t at = text.rfind(kVerified);
  if (at == std::string::npos) {
    text = ReadFrom(path, start);
    at = text.rfind(kVerified);
    if (at == std::string::npos) return "";
  }
  const size_t begin = at + sizeof(kVerified) - 1;
  return text.substr(begin, text.find_first_of(" \n", begin) - begin);
}

std::vector<std::string> LocalCluster::WorkerServingVersions() const {
  std::vector<std::string> versions;
  for (int gpu = 0; gpu < num_gpus(); ++gpu) versions.push_back(WorkerServingVersion(gpu));
  return versions;
}

absl::StatusOr<craft::v1::ListAgentsResponse> LocalCluster::ListAgents() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  craft::v1::ListAgentsResponse response;
  if (absl::Status s = FromGrpcStatus(placement_->ListAgents(&context, {}, &response)); !s.ok()) {
    return s;
  }
  return response;
}

void LocalCluster::UsePlanner(int replica) {
  placement_ = craft::v1::PlacementService::NewStub(ChannelAs("ops", replica));
}

absl::StatusOr<craft::v1::LayoutStatus> LocalCluster::GetLayout() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  craft::v1::LayoutStatus status;
  if (absl::Status s = FromGrpcStatus(placement_->GetLayout(&context, {}, &status)); !s.ok()) {
    return s;
  }
  return status;
}

absl::StatusOr<craft::v1::ReplanResponse> LocalCluster::Replan(bool force) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  craft::v1::ReplanRequest request;
  request.set_force(force);
  craft::v1::ReplanResponse response;
  if (absl::Status s = FromGrpcStatus(placement_->Replan(&context, request, &response)); !s.ok()) {
    return s;
  }
  return response;
}

bool LocalCluster::WaitForAgentsConnected(absl::Duration timeout) {
  return WaitFor(
      [&] {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
        craft::v1::ListAgentsResponse response;
        if (!placement_->ListAgents(&context, {}, &response).ok()) return false;
        int connected = 0;
        for (const auto& agent : response.agents()) connected += agent.connected() ? 1 : 0;
        return connected == options_.num_nodes;
      },
      timeout);
}

bool LocalCluster::WaitForWindows(int64_t windows, absl::Duration timeout) {
  return WaitFor(
      [&] {
        auto status = GetLayout();
        return status.ok() && status->windows_ingested() >= windows * num_gpus();
      },
      timeout);
}

absl::StatusOr<double> LocalCluster::WaitForMeasuredBalance(absl::Duration timeout) {
  double balance = 0;
  const bool measured = WaitFor(
      [&] {
        auto status = GetLayout();
        balance = status.ok() ? status->measured_balancedness() : 0;
        return balance > 0;
      },
      timeout);
  if (!measured) return absl::DeadlineExceededError("no complete window measured");
  return balance;
}

absl::StatusOr<std::string> LocalCluster::WaitForNewVersion(const std::string& old_version,
                                                            absl::Duration timeout) {
  std::string version;
  const bool changed = WaitFor(
      [&] {
        auto status = GetLayout();
        if (!status.ok() || !status->pending_version().empty()) return false;
        version = status->committed().version();
        return version != old_version;
      },
      timeout);
  if (!changed) return absl::DeadlineExceededError("no new committed version");
  return version;
}

bool LocalCluster::AllWorkersVerified(const std::string& version) {
  for (const auto& worker : workers_) {
    if (worker == nullptr) return false;
    if (worker->Log().find("verify ok version=" + version + " ") == std::string::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace craft::testing
