// The node agents one ApplyCoordinator drives: who is connected on which
// stream, with which GPUs and transfer endpoints, what the node and each of
// its GPUs serve, when it was last heard from, its GPUs' staging headroom,
// and the weight-transfer group id that global rank 0 announced. It checks
// hellos against the configured model and cluster and keeps at most
// cluster.num_nodes names, so that hellos under ever new names cannot grow
// it. It knows nothing of applies: the coordinator decides what a hello, an
// answer or a disconnect means for the apply and the resyncs, and tells the
// registry what the node now serves.
//
//   AgentRegistry registry(model, cluster, clock);
//   CRAFT_RETURN_IF_ERROR(registry.CheckHello(hello));
//   CRAFT_ASSIGN_OR_RETURN(std::optional<std::string> forgotten,
//                          registry.MakeRoomFor(hello.node()));
//   AgentRegistry::Node& node = registry.Register(hello, connection);
//   ...
//   if (AgentRegistry::Node* node = registry.Seen(name, connection)) node->SetServing(version);
//
// Thread-safety: not thread-safe; its owner serialises every call. The
// ApplyCoordinator owns one and guards it with its own mutex: one mutex for
// the registry and the apply, because every apply step reads and changes
// both at once (a Prepare goes to exactly the nodes connected at that
// instant, a stream replaced during a prepare aborts it, an answer counts
// only from the node's current stream), and one lock keeps such steps atomic
// with no lock order to get wrong. Waiting for it is cheap: the coordinator
// never holds it across I/O. One registry serves one coordinator (one
// placement group of nodes).
#ifndef CRAFT_SERVER_AGENT_REGISTRY_H_
#define CRAFT_SERVER_AGENT_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "craft/v1/agent.pb.h"
#include "planner/cluster.h"
#include "server/config.h"

namespace craft::server {

// One agent's stream as the coordinator sees it: the transport seam. The gRPC
// gateway implements it over a ServerBidiReactor; tests use a fake.
// Implementations must not block and must not call into the coordinator.
class AgentConnection {
 public:
  virtual ~AgentConnection() = default;
  // Queues `message` for the agent. At most one message waits: a newer one
  // replaces a message not yet written (latest wins).
  virtual void Send(const craft::v1::PlannerMessage& message) = 0;
  // Ends the stream with `status` once any write in flight completes.
  virtual void Close(const absl::Status& status) = 0;
};

struct AgentSnapshot {
  std::string node;
  std::vector<int> gpus;
  std::string serving_version;            // what the agent last reported it serves
  std::vector<std::string> gpu_versions;  // per entry of `gpus`
  bool connected = false;
  absl::Time last_seen;
  // The weight-transfer group id Prepares carry (global rank 0's) came from
  // this node's hello.
  bool has_transfer_group = false;
  // Load windows of this node's GPUs the load store refused (clock skew,
  // wrong shape, ...), over this planner's life.
  int64_t windows_rejected = 0;
};

class AgentRegistry {
 public:
  struct Node {
    std::vector<int> gpus;                        // sorted
    std::map<int, std::string> endpoints;         // by GPU
    std::string serving_version;                  // the node's committed version
    std::map<int, std::string> gpu_serving;       // by GPU: a restarted worker may differ
    std::map<int, int64_t> headroom;              // by GPU: staging headroom, when reported
    std::shared_ptr<AgentConnection> connection;  // null: disconnected
    absl::Time last_seen;
    int64_t windows_rejected = 0;  // AgentSnapshot::windows_rejected

    // True when the node and every one of its GPUs serve `version`.
    bool InSync(const std::string& version) const;
    // After an answer that names what the whole node serves.
    void SetServing(const std::string& version);
    // The GPUs `nack` lists did not get where the node did: what they serve
    // is unknown (it matches no version) until the node says.
    void MarkLagging(const craft::v1::Nack& nack);
  };

  // `clock` must outlive the registry.
  AgentRegistry(const ModelShape& model, const planner::ClusterShape& cluster, Clock* clock);

  // INVALID_ARGUMENT for a hello that does not fit the configured model and
  // cluster, or whose strings exceed their bounds (a transfer_group_id must
  // be empty or kTransferGroupIdBytes long); ALREADY_EXISTS when another
  // connected node claims one of its GPUs.
  absl::Status CheckHello(const craft::v1::AgentHello& hello) const;
  // Makes room for a hello from `name`: nothing to do when the name is known
  // or fewer than cluster.num_nodes are; otherwise the disconnected node
  // heard from least recently is forgotten and its name returned.
  // RESOURCE_EXHAUSTED when every known node is connected.
  absl::StatusOr<std::optional<std::string>> MakeRoomFor(const std::string& name);
  // Records a checked hello that arrived on `connection`, with room made for
  // it: the node's GPUs, endpoints, headroom and serving versions become the
  // hello's, it is connected on `connection` and seen now, and a transfer
  // group id that rank 0 announces becomes the latest (latest wins; another
  // rank's is logged and ignored). A stream the node was connected on before
  // is replaced: close it first.
  Node& Register(const craft::v1::AgentHello& hello, std::shared_ptr<AgentConnection> connection);

  // The node, connected or not; nullptr when unknown.
  Node* Find(const std::string& name);
  // The node if `connection` is its current stream, else nullptr.
  Node* Current(const std::string& name, const AgentConnection* connection);
  // Current, and the node was heard from now (last_seen).
  Node* Seen(const std::string& name, const AgentConnection* connection);
  // The stream `connection` of `name` ended; false (and nothing changes)
  // unless it was the node's current one.
  bool Disconnect(const std::string& name, const AgentConnection* connection);
  // A NodeLoad from the node's current stream: refreshes last_seen and its
  // GPUs' staging headroom (entries for GPUs of other nodes or negative are
  // ignored).
  void OnLoad(const std::string& name, const AgentConnection* connection,
              const craft::v1::NodeLoad& load);
  // `count` more load windows of `name`'s GPUs refused by the load store.
  void CountRejectedWindows(const std::string& name, int64_t count);

  // Every known node by name, connected or not.
  const std::map<std::string, Node>& nodes() const { return nodes_; }
  // GPUs no connected node claims.
  std::vector<int> GpusWithoutAgent() const;
  // The smallest staging headroom any connected GPU reports; nullopt when
  // none reports one.
  std::optional<int64_t> MinStagingHeadroom() const;
  std::vector<AgentSnapshot> Snapshots() const;
  // The latest non-empty GpuInfo.transfer_group_id a hello reported for
  // global rank 0 (an ncclUniqueId); "" until one does (CPU backends never
  // do). Not persisted: after a restart the agents' hellos bring it back.
  const std::string& transfer_group_id() const { return transfer_group_id_; }

 private:
  const ModelShape model_;
  const planner::ClusterShape cluster_;
  Clock* const clock_;
  std::map<std::string, Node> nodes_;
  std::string transfer_group_id_;
  std::string transfer_group_node_;  // the node whose hello reported it
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_AGENT_REGISTRY_H_
