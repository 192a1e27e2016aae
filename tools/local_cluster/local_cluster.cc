#include "tools/local_cluster/local_cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_io.h"
#include "common/grpc/status.h"
#include "common/runfiles.h"
#include "grpcpp/grpcpp.h"
#include "tools/local_cluster/yaml_merge.h"

namespace craft::local_cluster {
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

// A fresh directory from a mkdtemp pattern; "" when none could be made.
std::string MakeTempDir(const char* pattern) {
  std::string path = pattern;
  return ::mkdtemp(path.data()) != nullptr ? path : "";
}

std::string NodeName(int node) { return absl::StrCat("node", node); }

// Unix socket names hold at most 107 bytes and a NUL.
constexpr size_t kMaxSocketPath = 107;

using PlacementStub = craft::v1::PlacementService::Stub;

// One unary PlacementService call with a deadline.
template <typename Request, typename Response>
absl::StatusOr<Response> CallPlanner(PlacementStub& stub,
                                     grpc::Status (PlacementStub::*method)(grpc::ClientContext*,
                                                                           const Request&,
                                                                           Response*),
                                     const Request& request, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  Response response;
  if (absl::Status s = FromGrpcStatus((stub.*method)(&context, request, &response)); !s.ok()) {
    return s;
  }
  return response;
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

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  if (name == "planner") return Role::kPlanner;
  if (name == "agent") return Role::kAgent;
  if (name == "worker") return Role::kWorker;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role '", name, "' (planner, agent or worker)"));
}

absl::StatusOr<ExtraFlag> ParseExtraFlag(absl::string_view text) {
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not ROLE[INDEX]:FLAG (e.g. worker3:--seed=8)"));
  }
  absl::string_view who = text.substr(0, colon);
  const size_t digits = who.find_first_of("0123456789");
  ExtraFlag extra;
  absl::StatusOr<Role> role = ParseRole(who.substr(0, digits));
  if (!role.ok()) return role.status();
  extra.role = *role;
  if (digits != absl::string_view::npos && !absl::SimpleAtoi(who.substr(digits), &extra.index)) {
    return absl::InvalidArgumentError(absl::StrCat("'", who, "': a bad index"));
  }
  extra.flag = std::string(text.substr(colon + 1));
  if (extra.flag.rfind("--", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': the flag must start with --"));
  }
  return extra;
}

LocalCluster::LocalCluster(ClusterOptions options) : options_(std::move(options)) {
  if (options_.dir.empty()) {
    dir_ = MakeTempDir("/tmp/craft-it-XXXXXX");  // short: socket names are limited
    own_dir_ = !dir_.empty();
    if (dir_.empty()) setup_ = absl::InternalError("cannot make a directory in /tmp");
  } else {
    dir_ = options_.dir;
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    if (error)
      setup_ = absl::InternalError(absl::StrCat("cannot make ", dir_, ": ", error.message()));
  }
  socket_dir_ = dir_;
  if (absl::StrCat(dir_, "/agent", options_.num_nodes, ".sock").size() > kMaxSocketPath) {
    socket_dir_ = MakeTempDir("/tmp/craft-sock-XXXXXX");
  }
  for (int i = 0; i < options_.planners; ++i) {
    planner_ports_.push_back(options_.planner_port > 0 ? options_.planner_port + i : FreePort());
  }
  planners_.resize(options_.planners);
  agents_.resize(options_.num_nodes);
  workers_.resize(num_gpus());
  worker_log_offsets_.resize(num_gpus());
  std::vector<std::string> identities = {"craft-planner:127.0.0.1", "ops"};
  for (int node = 0; node < options_.num_nodes; ++node) identities.push_back(NodeName(node));
  if (!options_.insecure && setup_.ok()) {
    absl::StatusOr<craft::testing::TestCerts> certs =
        craft::testing::MakeTestCerts(dir_ + "/certs", identities);
    if (certs.ok()) {
      certs_ = *std::move(certs);
    } else {
      setup_ = certs.status();  // nothing can start without them
    }
  }
  placement_ = craft::v1::PlacementService::NewStub(ChannelAs("ops"));
}

std::string LocalCluster::Identity(Role role, int index) const {
  switch (role) {
    case Role::kPlanner:
      return "craft-planner";
    case Role::kAgent:
      return NodeName(index);
    case Role::kWorker:
      break;
  }
  return NodeName(index / options_.gpus_per_node);
}

TransportSecurity LocalCluster::SecurityOf(const std::string& name) const {
  if (!certs_.has_value()) {  // insecure, or the certificates failed (setup_)
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
  std::error_code ignored;
  if (socket_dir_ != dir_) std::filesystem::remove_all(socket_dir_, ignored);
  if (own_dir_ && std::getenv("CRAFT_KEEP_CLUSTER_DIR") == nullptr) {
    std::filesystem::remove_all(dir_, ignored);
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

std::string LocalCluster::FilePath(Role role, int index, absl::string_view suffix) const {
  return absl::StrCat(dir_, "/", ProcessName(role, index), suffix);
}

std::string LocalCluster::config_path(int replica) const {
  return FilePath(Role::kPlanner, replica, ".yaml");
}

std::string LocalCluster::socket_path(int node) const {
  return absl::StrCat(socket_dir_, "/", ProcessName(Role::kAgent, node), ".sock");
}

std::string LocalCluster::Binary(Role role) const {
  switch (role) {
    case Role::kPlanner:
      return options_.planner_binary.empty() ? Runfile("server/craft-planner")
                                             : options_.planner_binary;
    case Role::kAgent:
      return options_.agent_binary.empty() ? Runfile("agent/craft-agent") : options_.agent_binary;
    case Role::kWorker:
      return options_.worker_binary.empty() ? Runfile("gpu_worker/craft-worker")
                                            : options_.worker_binary;
  }
  return "";
}

absl::Status LocalCluster::Start() {
  for (int replica = 0; replica < options_.planners; ++replica) {
    if (absl::Status s = StartPlanner(replica); !s.ok()) return s;
  }
  for (int node = 0; node < options_.num_nodes; ++node) {
    if (absl::Status s = StartAgent(node); !s.ok()) return s;
  }
  // Together: a GPU worker may take long to set its device up.
  for (int gpu = 0; gpu < num_gpus(); ++gpu) {
    if (absl::Status s = Launch(Role::kWorker, gpu, WorkerFlags(gpu), {}); !s.ok()) return s;
  }
  for (int gpu = 0; gpu < num_gpus(); ++gpu) {
    if (absl::Status s = WaitUntilReady(Role::kWorker, gpu); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::StartProcess(Role role, int index,
                                        const std::vector<std::string>& extra_flags) {
  absl::StatusOr<std::vector<std::string>> role_flags;
  switch (role) {
    case Role::kPlanner:
      role_flags = PlannerFlags(index);
      break;
    case Role::kAgent:
      role_flags = AgentFlags(index);
      break;
    case Role::kWorker:
      role_flags = WorkerFlags(index);
      break;
  }
  if (!role_flags.ok()) return role_flags.status();
  if (absl::Status s = Launch(role, index, *std::move(role_flags), extra_flags); !s.ok()) return s;
  return WaitUntilReady(role, index);
}

absl::Status LocalCluster::StartPlanner(int replica, const std::vector<std::string>& extra_flags) {
  return StartProcess(Role::kPlanner, replica, extra_flags);
}

absl::Status LocalCluster::StartAgent(int node, const std::vector<std::string>& extra_flags) {
  return StartProcess(Role::kAgent, node, extra_flags);
}

absl::Status LocalCluster::StartWorker(int gpu, const std::vector<std::string>& extra_flags) {
  return StartProcess(Role::kWorker, gpu, extra_flags);
}

absl::StatusOr<std::vector<std::string>> LocalCluster::PlannerFlags(int replica) const {
  std::ostringstream config;
  config << "listen_address: \"" << planner_address(replica) << "\"\n"
         << "state_path: " << state_path() << "\n"
         << "model:\n  num_layers: " << options_.num_layers
         << "\n  num_experts: " << options_.num_experts << "\n  top_k: " << options_.top_k
         << "\n  bytes_per_expert: " << options_.expert_bytes << "\n"
         << "loads:\n  window_horizon: 16\n"
         << "replan:\n  interval_s: " << options_.replan_interval_s
         << "\n  algorithm: craft\n  budget: " << options_.budget << "\n  gain_threshold: 0.01\n"
         << "apply:\n  timeout_ms: " << options_.apply_timeout_ms << "\n";
  // Every group's cluster and node names (with --insecure the scripts'
  // configs never had a security section).
  auto cluster_of = [&](int first_node, int nodes, absl::string_view indent) {
    std::vector<std::string> node_names;
    for (int node = first_node; node < first_node + nodes; ++node) {
      node_names.push_back(NodeName(node));
    }
    config << indent << "cluster: {num_gpus: " << nodes * options_.gpus_per_node
           << ", num_nodes: " << nodes << "}\n";
    if (options_.insecure) return;
    config << indent << (indent.empty() ? "security:\n  nodes: [" : "nodes: [")
           << absl::StrJoin(node_names, ", ") << "]\n";
  };
  if (options_.groups.empty()) {
    cluster_of(0, options_.num_nodes, "");
    if (!options_.insecure) config << "  admins: [ops]\n";
  } else {
    if (!options_.insecure) config << "security:\n  admins: [ops]\n";
    config << "groups:\n";
    for (size_t g = 0; g < options_.groups.size(); ++g) {
      config << "  - name: " << options_.groups[g] << "\n";
      cluster_of(static_cast<int>(g) * nodes_per_group(), nodes_per_group(), "    ");
    }
  }
  if (!options_.etcd_endpoints.empty()) {
    config << "ha:\n  etcd_endpoints: [" << options_.etcd_endpoints
           << "]\n  prefix: /craft/it\n  lease_ttl_s: " << options_.lease_ttl_s
           << "\n  etcd_timeout_ms: 1000\n  etcd_insecure: true\n";
  }
  absl::StatusOr<std::string> merged = MergeYaml(config.str(), options_.planner_config);
  if (!merged.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the planner config overrides: ", merged.status().message()));
  }
  const std::string path = config_path(replica);
  if (!(std::ofstream(path) << *merged)) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  std::vector<std::string> flags = {"--config=" + path};
  if (!options_.etcd_endpoints.empty()) {
    flags.push_back("--advertise_address=" + planner_address(replica));
  }
  return flags;
}

int LocalCluster::nodes_per_group() const {
  return options_.groups.empty() ? options_.num_nodes
                                 : options_.num_nodes / static_cast<int>(options_.groups.size());
}

std::vector<std::string> LocalCluster::GroupNames() const {
  return options_.groups.empty() ? std::vector<std::string>{""} : options_.groups;
}

std::string LocalCluster::group_of_node(int node) const {
  return options_.groups.empty() ? "" : options_.groups[node / nodes_per_group()];
}

std::vector<std::string> LocalCluster::AgentFlags(int node) const {
  // Ranks are the group's: node-major within it.
  const int local_node = node % nodes_per_group();
  std::vector<int> gpus;
  for (int i = 0; i < options_.gpus_per_node; ++i) {
    gpus.push_back(local_node * options_.gpus_per_node + i);
  }
  std::vector<std::string> flags = {
      "--node=" + NodeName(node), "--gpus=" + absl::StrJoin(gpus, ","),
      "--socket=" + socket_path(node), "--planner=" + planner_addresses(),
      "--state_file=" + FilePath(Role::kAgent, node, ".state")};
  if (!options_.groups.empty()) flags.push_back("--group=" + group_of_node(node));
  if (options_.agent_model_flags) {
    flags.push_back(absl::StrCat("--num_layers=", options_.num_layers));
    flags.push_back(absl::StrCat("--num_experts=", options_.num_experts));
    flags.push_back(absl::StrCat("--top_k=", options_.top_k));
  }
  return flags;
}

std::vector<std::string> LocalCluster::WorkerFlags(int gpu) const {
  const int node = gpu / options_.gpus_per_node;
  const int group_gpus = nodes_per_group() * options_.gpus_per_node;
  std::vector<std::string> flags = {
      "--backend=" + options_.backend,
      absl::StrCat("--gpu=", gpu % group_gpus),
      absl::StrCat("--num_gpus=", group_gpus),
      absl::StrCat("--num_nodes=", nodes_per_group()),
      absl::StrCat("--num_layers=", options_.num_layers),
      absl::StrCat("--num_experts=", options_.num_experts),
      absl::StrCat("--top_k=", options_.top_k),
      absl::StrCat("--expert_bytes=", options_.expert_bytes),
      "--agent=unix:" + socket_path(node),
      absl::StrCat("--window_ms=", options_.window_ms),
      absl::StrCat("--tokens_per_window=", options_.tokens_per_window),
      options_.trace.empty() ? absl::StrCat("--skew=", options_.skew) : "--trace=" + options_.trace,
      absl::StrCat("--seed=", options_.seed),
      absl::StrCat("--verify_interval_ms=", options_.verify_interval_ms)};
  return flags;
}

absl::Status LocalCluster::Launch(Role role, int index, std::vector<std::string> role_flags,
                                  const std::vector<std::string>& extra_flags) {
  if (!setup_.ok()) return setup_;
  const std::string name = ProcessName(role, index);
  const std::string ready = FilePath(role, index, ".ready");
  std::remove(ready.c_str());  // a restart must not find its predecessor's
  std::vector<std::string> flags = std::move(role_flags);
  for (std::string& flag : SecurityFlags(Identity(role, index))) flags.push_back(std::move(flag));
  flags.push_back("--ready_file=" + ready);
  if (options_.metrics) flags.push_back("--metrics_listen=127.0.0.1:0");
  for (const ExtraFlag& extra : options_.extra_flags) {
    if (extra.role == role && (extra.index < 0 || extra.index == index)) {
      flags.push_back(extra.flag);
    }
  }
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  extra_flags_[name] = extra_flags;
  const std::string log = FilePath(role, index, ".log");
  if (role == Role::kWorker) worker_log_offsets_[index] = FileSize(log);
  absl::StatusOr<Process> process = Process::Start(Binary(role), flags, log, CrashEnv(role, index));
  if (!process.ok()) return process.status();
  slot(role, index) = std::make_unique<Process>(*std::move(process));
  return absl::OkStatus();
}

absl::Status LocalCluster::WaitUntilReady(Role role, int index) {
  Process& process = *slot(role, index);
  const std::string name = ProcessName(role, index);
  std::optional<std::map<std::string, std::string>> values;
  WaitFor(
      [&] {
        values = ReadKeyValueFile(FilePath(role, index, ".ready"));
        return values.has_value() || !process.Running();
      },
      options_.start_timeout);
  if (values.has_value()) {
    ready_values_[name] = *std::move(values);
    return absl::OkStatus();
  }
  const std::string log_end =
      absl::StrCat("; ", process.log_path(), " ends:\n", process.LogTail(10));
  if (!process.Running()) {
    return absl::UnavailableError(absl::StrCat(name, " exited with status ",
                                               ShellExitCode(*process.exit_status()),
                                               " before it was ready", log_end));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      name, " was not ready within ", absl::FormatDuration(options_.start_timeout), log_end));
}

std::unique_ptr<Process>& LocalCluster::slot(Role role, int index) {
  switch (role) {
    case Role::kPlanner:
      return planners_[index];
    case Role::kAgent:
      return agents_[index];
    case Role::kWorker:
      break;
  }
  return workers_[index];
}

std::vector<std::string> LocalCluster::CrashEnv(Role role, int index) const {
  return {"CRAFT_CRASH_POINTS_FILE=" + crash_file(role, index)};
}

std::string LocalCluster::crash_file(Role role, int index) const {
  return FilePath(role, index, ".crash");
}

Process* LocalCluster::process(Role role, int index) { return slot(role, index).get(); }

bool LocalCluster::Running(Role role, int index) {
  Process* p = process(role, index);
  return p != nullptr && p->Running();
}

absl::StatusOr<int> LocalCluster::Stop(Role role, int index, int signal, absl::Duration grace) {
  std::unique_ptr<Process>& p = slot(role, index);
  if (p == nullptr) {
    return absl::NotFoundError(absl::StrCat(ProcessName(role, index), " was never started"));
  }
  if (!p->Running()) return *p->exit_status();
  absl::StatusOr<int> status = p->Stop(signal, grace);
  return status.ok() ? status : *p->exit_status();
}

std::vector<std::pair<Role, int>> LocalCluster::AllProcesses() const {
  std::vector<std::pair<Role, int>> all;
  for (int i = 0; i < options_.planners; ++i) all.emplace_back(Role::kPlanner, i);
  for (int i = 0; i < options_.num_nodes; ++i) all.emplace_back(Role::kAgent, i);
  for (int i = 0; i < num_gpus(); ++i) all.emplace_back(Role::kWorker, i);
  return all;
}

std::map<std::string, std::string> LocalCluster::ReadyValues(Role role, int index) const {
  const auto it = ready_values_.find(ProcessName(role, index));
  return it == ready_values_.end() ? std::map<std::string, std::string>{} : it->second;
}

std::vector<ProcessExit> LocalCluster::Shutdown(absl::Duration grace) {
  struct Stopping {
    Process* process;
    ProcessExit exit;
  };
  std::vector<Stopping> stopping;
  for (const auto& [role, index] : AllProcesses()) {
    Process* p = process(role, index);
    if (p == nullptr) continue;
    Stopping s{p, {ProcessName(role, index), p->pid()}};
    s.exit.before_shutdown = !p->Running();
    stopping.push_back(std::move(s));
  }
  const absl::Time start = absl::Now();
  for (Stopping& s : stopping) {
    s.process->Signal(SIGTERM);
    s.process->Signal(SIGCONT);  // a stopped process acts on SIGTERM only once continued
  }
  const absl::Time deadline = start + grace;
  // Polled together, so that each exit is timed when it happens.
  WaitFor(
      [&] {
        bool all_done = true;
        for (Stopping& s : stopping) {
          if (s.exit.before_shutdown || s.process->exit_status().has_value()) continue;
          if (s.process->Running()) {
            all_done = false;
          } else {
            s.exit.took = absl::Now() - start;
          }
        }
        return all_done;
      },
      deadline - absl::Now());
  for (Stopping& s : stopping) {
    if (!s.process->exit_status().has_value()) {
      s.exit.killed = true;
      (void)s.process->Stop(SIGKILL, absl::Seconds(5));
      s.exit.took = absl::Now() - start;
    }
    s.exit.status = *s.process->exit_status();
  }
  std::vector<ProcessExit> exits;
  for (Stopping& s : stopping) exits.push_back(std::move(s.exit));
  return exits;
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
  slot(role, index).reset();  // SIGKILLs a survivor; a dead one is not signalled
  return StartProcess(role, index, extra_flags_[ProcessName(role, index)]);
}

std::string LocalCluster::WorkerServingVersion(int gpu) const {
  static constexpr char kVerified[] = "verify ok version=";
  const std::string path = FilePath(Role::kWorker, gpu, ".log");
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

absl::StatusOr<craft::v1::ListAgentsResponse> LocalCluster::ListAgents(const std::string& group) {
  craft::v1::ListAgentsRequest request;
  request.set_group(group);
  return CallPlanner(*placement_, &PlacementStub::ListAgents, request, absl::Seconds(5));
}

void LocalCluster::UsePlanner(int replica) {
  placement_ = craft::v1::PlacementService::NewStub(ChannelAs("ops", replica));
}

absl::StatusOr<craft::v1::LayoutStatus> LocalCluster::GetLayout(const std::string& group) {
  craft::v1::GetLayoutRequest request;
  request.set_group(group);
  return CallPlanner(*placement_, &PlacementStub::GetLayout, request, absl::Seconds(5));
}

absl::StatusOr<craft::v1::ReplanResponse> LocalCluster::Replan(bool force,
                                                               const std::string& group) {
  craft::v1::ReplanRequest request;
  request.set_force(force);
  request.set_group(group);
  return CallPlanner(*placement_, &PlacementStub::Replan, request, absl::Seconds(20));
}

bool LocalCluster::WaitForAgentsConnected(absl::Duration timeout) {
  return WaitFor(
      [&] {
        int connected = 0;
        for (const std::string& group : GroupNames()) {
          absl::StatusOr<craft::v1::ListAgentsResponse> response = ListAgents(group);
          if (!response.ok()) return false;
          for (const auto& agent : response->agents()) connected += agent.connected() ? 1 : 0;
        }
        return connected == options_.num_nodes;
      },
      timeout);
}

bool LocalCluster::WaitForWindows(int64_t windows, absl::Duration timeout) {
  return WaitFor(
      [&] {
        int64_t ingested = 0;
        for (const std::string& group : GroupNames()) {
          auto status = GetLayout(group);
          if (!status.ok()) return false;
          ingested += status->windows_ingested();
        }
        return ingested >= windows * num_gpus();
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

}  // namespace craft::local_cluster
