// craft-agent's Prometheus metrics, read from NodeState at every scrape:
// the planner stream, attached workers, the served layout version, per-GPU
// token load, load windows and apply answers; and from the workers' socket
// listener: connections accepted and refused. Each agent is its own scrape
// target, so the node is the target's `instance`, never a label; `gpu` is a
// global rank of this node.
//
//   auto metrics = std::make_shared<AgentMetrics>(options.node.gpus);
//   metrics->Watch(agent->node(), agent->listener());
//   metrics_server->Register(metrics);
//   ...
//   metrics->Watch(nullptr);  // before the agent is destroyed
//
// Thread-safety: thread-safe.
#ifndef CRAFT_AGENT_AGENT_METRICS_H_
#define CRAFT_AGENT_AGENT_METRICS_H_

#include <map>
#include <vector>

#include "agent/node_state.h"
#include "agent/unix_socket_listener.h"
#include "common/metrics.h"

namespace craft::agent {

class AgentMetrics final : public metrics::ScrapedRegistry {
 public:
  // `gpus`: the node's global ranks.
  explicit AgentMetrics(const std::vector<int>& gpus);

  // Where values come from; null detaches (waiting for a scrape in
  // progress). Both must stay valid until detached; `listener` may be null.
  void Watch(const NodeState* node, const UnixSocketListener* listener = nullptr);

 private:
  void Refresh() const override;

  const NodeState* node_ = nullptr;               // guarded by refresh_mutex()
  const UnixSocketListener* listener_ = nullptr;  // guarded by refresh_mutex()

  prometheus::Gauge* planner_connected_;
  prometheus::Counter* planner_reconnects_;
  prometheus::Counter* planner_disconnects_;
  prometheus::Counter* worker_resyncs_started_;
  prometheus::Counter* worker_resyncs_done_;
  prometheus::Counter* worker_resyncs_failed_;
  prometheus::Gauge* workers_attached_;
  prometheus::Counter* connections_accepted_;
  prometheus::Counter* connections_refused_;
  std::map<int, prometheus::Gauge*> gpu_attached_;
  std::map<int, prometheus::Counter*> gpu_tokens_;
  prometheus::Gauge* highest_epoch_;
  prometheus::Gauge* committed_epoch_;
  prometheus::Gauge* committed_seq_;
  prometheus::Gauge* apply_in_progress_;
  prometheus::Counter* windows_received_;
  prometheus::Counter* windows_malformed_;
  prometheus::Counter* windows_out_of_order_;
  prometheus::Counter* loads_sent_;
  prometheus::Counter* loads_dropped_;
  std::map<craft::v1::AckPhase, prometheus::Counter*> acks_;
  std::map<craft::v1::ErrorCode, prometheus::Counter*> nacks_;
};

}  // namespace craft::agent

#endif  // CRAFT_AGENT_AGENT_METRICS_H_
