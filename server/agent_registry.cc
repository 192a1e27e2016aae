#include "server/agent_registry.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/names.h"
#include "server/layout_history.h"
#include "wire/limits.h"
#include "wire/version.h"

namespace craft::server {

bool AgentRegistry::Node::InSync(const std::string& version) const {
  if (serving_version != version) return false;
  for (const auto& [gpu, serving] : gpu_serving) {
    if (serving != version) return false;
  }
  return true;
}

void AgentRegistry::Node::SetServing(const std::string& version) {
  serving_version = version;
  for (auto& [gpu, serving] : gpu_serving) serving = version;
}

void AgentRegistry::Node::MarkLagging(const craft::v1::Nack& nack) {
  for (const craft::v1::GpuError& error : nack.error().gpus()) {
    auto it = gpu_serving.find(error.gpu());
    if (it != gpu_serving.end()) it->second.clear();  // matches no version
  }
}

AgentRegistry::AgentRegistry(const ModelShape& model, const planner::ClusterShape& cluster,
                             Clock* clock)
    : model_(model), cluster_(cluster), clock_(clock) {}

absl::Status AgentRegistry::CheckHello(const craft::v1::AgentHello& hello) const {
  if (hello.node().empty()) return absl::InvalidArgumentError("AgentHello.node is empty");
  // Names end up in logs, metrics, ListAgents and every Prepare's endpoints:
  // a node name is a DNS subdomain (Kubernetes node names are), and every
  // string a hello carries has a small bound.
  if (!IsValidName(hello.node())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AgentHello.node must be 1 to ", kMaxNameBytes,
        " letters, digits, '-', '.' or '_' (a DNS name); got ", hello.node().size(), " bytes"));
  }
  for (const std::string* version : {&hello.committed_version(), &hello.prepared_version()}) {
    if (version->size() > kMaxVersionBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a version in AgentHello is longer than ", kMaxVersionBytes, " bytes"));
    }
  }
  // The hello states what the agent's own configuration says; a field of 0
  // is one it leaves to this planner (the Welcome says it, and the agent
  // checks its workers against it).
  const craft::v1::ModelShape& model = hello.model();
  const ModelShape& want = model_;
  auto differs = [](int64_t agent, int64_t planner) { return agent != 0 && agent != planner; };
  if (differs(model.num_layers(), want.num_layers) ||
      differs(model.num_experts(), want.num_experts) || differs(model.top_k(), want.top_k) ||
      differs(model.bytes_per_expert(), want.bytes_per_expert)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model shape mismatch: agent ", hello.node(), " runs num_layers=", model.num_layers(),
        " num_experts=", model.num_experts(), " top_k=", model.top_k(),
        " bytes_per_expert=", model.bytes_per_expert(), ", the planner is configured for ",
        want.num_layers, "/", want.num_experts, "/", want.top_k, "/", want.bytes_per_expert));
  }
  if (hello.gpus().empty()) return absl::InvalidArgumentError("AgentHello lists no GPUs");
  const planner::ClusterShape& cluster = cluster_;
  std::set<int> ranks;
  for (const craft::v1::GpuInfo& gpu : hello.gpus()) {
    if (gpu.rank() < 0 || gpu.rank() >= cluster.num_gpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPU rank ", gpu.rank(), " outside [0, ", cluster.num_gpus, ")"));
    }
    if (!ranks.insert(gpu.rank()).second) {
      return absl::InvalidArgumentError(absl::StrCat("GPU rank ", gpu.rank(), " listed twice"));
    }
    if (gpu.transfer_endpoint().size() > kMaxEndpointBytes ||
        gpu.serving_version().size() > kMaxVersionBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPU rank ", gpu.rank(), ": transfer_endpoint over ", kMaxEndpointBytes,
                       " bytes or serving_version over ", kMaxVersionBytes, " bytes"));
    }
    if (!gpu.transfer_group_id().empty() &&
        gpu.transfer_group_id().size() != kTransferGroupIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPU rank ", gpu.rank(), ": transfer_group_id has ",
                       gpu.transfer_group_id().size(), " bytes, not 0 or ", kTransferGroupIdBytes));
    }
    if (cluster.NodeOf(gpu.rank()) != cluster.NodeOf(hello.gpus(0).rank())) {
      return absl::InvalidArgumentError(
          absl::StrCat("GPU ranks ", hello.gpus(0).rank(), " and ", gpu.rank(),
                       " are on different nodes of the cluster (ranks are node-major, ",
                       cluster.gpus_per_node(), " per node)"));
    }
  }
  for (const auto& [name, node] : nodes_) {
    if (name == hello.node() || node.connection == nullptr) continue;
    for (int gpu : node.gpus) {
      if (ranks.count(gpu) > 0) {
        return absl::AlreadyExistsError(
            absl::StrCat("GPU rank ", gpu, " is already claimed by connected node ", name));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> AgentRegistry::MakeRoomFor(const std::string& name) {
  if (nodes_.count(name) > 0 || static_cast<int>(nodes_.size()) < cluster_.num_nodes) {
    return std::nullopt;
  }
  // Only disconnected nodes are forgotten, so never one that takes part in
  // an apply (the coordinator drops a node from its apply when it leaves).
  auto oldest = nodes_.end();
  for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
    if (it->second.connection != nullptr) continue;
    if (oldest == nodes_.end() || it->second.last_seen < oldest->second.last_seen) oldest = it;
  }
  if (oldest == nodes_.end()) {
    return absl::ResourceExhaustedError(absl::StrCat("all ", cluster_.num_nodes,
                                                     " nodes of the cluster are connected; node '",
                                                     name, "' would be one too many"));
  }
  CRAFT_LOG(INFO) << "forgetting disconnected node " << oldest->first << " to make room for "
                  << name;
  std::string forgotten = oldest->first;
  nodes_.erase(oldest);
  return forgotten;
}

AgentRegistry::Node& AgentRegistry::Register(const craft::v1::AgentHello& hello,
                                             std::shared_ptr<AgentConnection> connection) {
  Node& node = nodes_[hello.node()];
  node.gpus.clear();
  node.endpoints.clear();
  node.headroom.clear();
  node.serving_version = VersionOrInitial(hello.committed_version());
  node.gpu_serving.clear();
  for (const craft::v1::GpuInfo& gpu : hello.gpus()) {
    node.gpus.push_back(gpu.rank());
    node.endpoints[gpu.rank()] = gpu.transfer_endpoint();
    if (gpu.has_staging_headroom_bytes() && gpu.staging_headroom_bytes() >= 0) {
      node.headroom[gpu.rank()] = gpu.staging_headroom_bytes();
    }
    node.gpu_serving[gpu.rank()] = gpu.serving_version().empty()
                                       ? node.serving_version
                                       : VersionOrInitial(gpu.serving_version());
  }
  std::sort(node.gpus.begin(), node.gpus.end());
  for (const craft::v1::GpuInfo& gpu : hello.gpus()) {
    if (gpu.transfer_group_id().empty()) continue;
    if (gpu.rank() != 0) {
      // Only rank 0 creates the communicator's id; another rank's is a
      // worker bug, and relaying it would split the cluster in two groups.
      CRAFT_LOG(WARNING) << "agent " << hello.node() << ": GPU rank " << gpu.rank()
                         << " reports a transfer group id; only rank 0's is used";
      continue;
    }
    // Latest wins: rank 0 makes a new id whenever its communicator was
    // aborted, and its agent re-announces the node with it. Never log the
    // bytes: they admit a process to the cluster's communicator.
    if (gpu.transfer_group_id() != transfer_group_id_) {
      CRAFT_LOG(INFO) << "agent " << hello.node()
                      << " announced a new weight-transfer group id for GPU rank 0";
    }
    transfer_group_id_ = gpu.transfer_group_id();
    transfer_group_node_ = hello.node();
  }
  node.connection = std::move(connection);
  node.last_seen = clock_->Now();
  return node;
}

AgentRegistry::Node* AgentRegistry::Find(const std::string& name) {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

AgentRegistry::Node* AgentRegistry::Current(const std::string& name,
                                            const AgentConnection* connection) {
  Node* node = Find(name);
  return node != nullptr && node->connection.get() == connection ? node : nullptr;
}

AgentRegistry::Node* AgentRegistry::Seen(const std::string& name,
                                         const AgentConnection* connection) {
  Node* node = Current(name, connection);
  if (node != nullptr) node->last_seen = clock_->Now();
  return node;
}

bool AgentRegistry::Disconnect(const std::string& name, const AgentConnection* connection) {
  Node* node = Current(name, connection);
  if (node == nullptr) return false;  // an older, replaced stream
  node->connection = nullptr;
  return true;
}

void AgentRegistry::OnLoad(const std::string& name, const AgentConnection* connection,
                           const craft::v1::NodeLoad& load) {
  Node* node = Seen(name, connection);
  if (node == nullptr) return;
  for (const craft::v1::StagingHeadroom& headroom : load.headroom()) {
    if (headroom.bytes() < 0 ||
        !std::binary_search(node->gpus.begin(), node->gpus.end(), headroom.gpu())) {
      continue;
    }
    node->headroom[headroom.gpu()] = headroom.bytes();
  }
}

void AgentRegistry::CountRejectedWindows(const std::string& name, int64_t count) {
  if (Node* node = Find(name); node != nullptr) node->windows_rejected += count;
}

std::vector<int> AgentRegistry::GpusWithoutAgent() const {
  std::vector<bool> claimed(cluster_.num_gpus, false);
  for (const auto& [name, node] : nodes_) {
    if (node.connection == nullptr) continue;
    for (int gpu : node.gpus) claimed[gpu] = true;
  }
  std::vector<int> missing;
  for (int g = 0; g < cluster_.num_gpus; ++g) {
    if (!claimed[g]) missing.push_back(g);
  }
  return missing;
}

std::optional<int64_t> AgentRegistry::MinStagingHeadroom() const {
  std::optional<int64_t> least;
  for (const auto& [name, node] : nodes_) {
    if (node.connection == nullptr) continue;
    for (const auto& [gpu, bytes] : node.headroom) least = least ? std::min(*least, bytes) : bytes;
  }
  return least;
}

std::vector<AgentSnapshot> AgentRegistry::Snapshots() const {
  std::vector<AgentSnapshot> agents;
  for (const auto& [name, node] : nodes_) {
    std::vector<std::string> gpu_versions;
    for (int gpu : node.gpus) {
      auto it = node.gpu_serving.find(gpu);
      gpu_versions.push_back(it == node.gpu_serving.end() ? "" : it->second);
    }
    agents.push_back({name, node.gpus, node.serving_version, std::move(gpu_versions),
                      node.connection != nullptr, node.last_seen,
                      !transfer_group_id_.empty() && name == transfer_group_node_,
                      node.windows_rejected});
  }
  return agents;
}

}  // namespace craft::server
