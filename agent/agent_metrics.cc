#include "agent/agent_metrics.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "wire/version.h"

namespace craft::agent {
namespace {

using metrics::AdvanceTo;
using metrics::CounterFamily;
using metrics::GaugeFamily;

double Value(int64_t count) { return static_cast<double>(count); }

template <typename Key>
int64_t CountOf(const std::map<Key, int64_t>& counts, Key key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

}  // namespace

AgentMetrics::AgentMetrics(const std::vector<int>& gpus) {
  prometheus::Registry& r = registry();
  planner_connected_ =
      &GaugeFamily(r, "craft_agent_planner_connected", "1 while the stream to the planner is up.")
           .Add({});
  planner_reconnects_ = &CounterFamily(r, "craft_agent_planner_reconnects_total",
                                       "Streams to the planner established after the first one.")
                             .Add({});
  planner_disconnects_ = &CounterFamily(r, "craft_agent_planner_disconnects_total",
                                        "Streams to the planner that ended.")
                              .Add({});
  prometheus::Family<prometheus::Counter>& resyncs =
      CounterFamily(r, "craft_agent_worker_resyncs_total",
                    "Workers the agent brought to the committed layout itself, by what became of "
                    "each attempt (started, done, failed: retried).");
  worker_resyncs_started_ = &resyncs.Add({{"result", "started"}});
  worker_resyncs_done_ = &resyncs.Add({{"result", "done"}});
  worker_resyncs_failed_ = &resyncs.Add({{"result", "failed"}});
  GaugeFamily(r, "craft_agent_configured_gpus", "GPUs (workers) this node is configured with.")
      .Add({})
      .Set(static_cast<double>(gpus.size()));
  workers_attached_ =
      &GaugeFamily(r, "craft_agent_workers_attached", "Workers attached on the Unix socket.")
           .Add({});
  prometheus::Family<prometheus::Counter>& connections = CounterFamily(
      r, "craft_agent_socket_connections_total",
      "Connections to the workers' Unix socket, by result: accepted, or refused because the "
      "peer's uid and gid (SO_PEERCRED) are not the allowed ones.");
  connections_accepted_ = &connections.Add({{"result", "accepted"}});
  connections_refused_ = &connections.Add({{"result", "refused"}});
  prometheus::Family<prometheus::Gauge>& attached =
      GaugeFamily(r, "craft_agent_gpu_worker_attached",
                  "1 while the worker of a GPU (global rank) is attached.");
  prometheus::Family<prometheus::Counter>& tokens =
      CounterFamily(r, "craft_agent_gpu_expert_tokens_total",
                    "Token-to-expert assignments a GPU computed, from its accepted load windows "
                    "(summed over layers and slots).");
  for (int gpu : gpus) {
    gpu_attached_[gpu] = &attached.Add({{"gpu", absl::StrCat(gpu)}});
    gpu_tokens_[gpu] = &tokens.Add({{"gpu", absl::StrCat(gpu)}});
  }
  highest_epoch_ =
      &GaugeFamily(r, "craft_agent_highest_epoch", "Highest planner epoch seen (fencing).").Add({});
  committed_epoch_ = &GaugeFamily(r, "craft_agent_committed_layout_epoch",
                                  "Epoch part of the layout version the node serves.")
                          .Add({});
  committed_seq_ = &GaugeFamily(r, "craft_agent_committed_layout_seq",
                                "Sequence part of the layout version the node serves.")
                        .Add({});
  apply_in_progress_ = &GaugeFamily(r, "craft_agent_apply_in_progress",
                                    "1 while an apply is being relayed to the workers.")
                            .Add({});
  windows_received_ = &CounterFamily(r, "craft_agent_load_windows_received_total",
                                     "Load windows received from workers.")
                           .Add({});
  prometheus::Family<prometheus::Counter>& rejected =
      CounterFamily(r, "craft_agent_load_windows_rejected_total",
                    "Load windows dropped by the agent, by reason.");
  windows_malformed_ = &rejected.Add({{"reason", "malformed"}});
  windows_out_of_order_ = &rejected.Add({{"reason", "out_of_order"}});
  loads_sent_ = &CounterFamily(r, "craft_agent_loads_sent_total",
                               "NodeLoad messages (one window id, every GPU) sent to the planner.")
                     .Add({});
  loads_dropped_ = &CounterFamily(r, "craft_agent_loads_dropped_total",
                                  "NodeLoads dropped while the planner was unreachable.")
                        .Add({});
  prometheus::Family<prometheus::Counter>& acks =
      CounterFamily(r, "craft_agent_acks_sent_total", "Acks sent to the planner, by phase.");
  for (craft::v1::AckPhase phase :
       {craft::v1::PREPARED, craft::v1::COMMITTED, craft::v1::ABORTED}) {
    acks_[phase] = &acks.Add({{"phase", absl::AsciiStrToLower(craft::v1::AckPhase_Name(phase))}});
  }
  prometheus::Family<prometheus::Counter>& nacks =
      CounterFamily(r, "craft_agent_nacks_sent_total", "Nacks sent to the planner, by error code.");
  for (int code = craft::v1::ErrorCode_MIN + 1; code <= craft::v1::ErrorCode_MAX; ++code) {
    if (!craft::v1::ErrorCode_IsValid(code)) continue;
    const auto error = static_cast<craft::v1::ErrorCode>(code);
    nacks_[error] = &nacks.Add({{"code", absl::AsciiStrToLower(craft::v1::ErrorCode_Name(error))}});
  }
}

void AgentMetrics::Watch(const NodeState* node, const UnixSocketListener* listener) {
  absl::MutexLock lock(&refresh_mutex());
  node_ = node;
  listener_ = node != nullptr ? listener : nullptr;
}

void AgentMetrics::Refresh() const {
  if (listener_ != nullptr) {
    const UnixSocketListener::Stats socket = listener_->stats();
    AdvanceTo(*connections_accepted_, Value(socket.accepted));
    AdvanceTo(*connections_refused_, Value(socket.refused));
  }
  if (node_ == nullptr) return;
  const NodeState::Stats stats = node_->stats();
  planner_connected_->Set(stats.planner_connected ? 1 : 0);
  AdvanceTo(*planner_reconnects_, Value(std::max<int64_t>(stats.planner_connects - 1, 0)));
  AdvanceTo(*planner_disconnects_, Value(stats.planner_disconnects));
  AdvanceTo(*worker_resyncs_started_, Value(stats.worker_resyncs_started));
  AdvanceTo(*worker_resyncs_done_, Value(stats.worker_resyncs_done));
  AdvanceTo(*worker_resyncs_failed_, Value(stats.worker_resyncs_failed));
  workers_attached_->Set(static_cast<double>(stats.attached_gpus.size()));
  for (const auto& [gpu, gauge] : gpu_attached_) gauge->Set(0);
  for (int gpu : stats.attached_gpus) {
    if (auto it = gpu_attached_.find(gpu); it != gpu_attached_.end()) it->second->Set(1);
  }
  for (const auto& [gpu, counter] : gpu_tokens_) {
    AdvanceTo(*counter, Value(CountOf(stats.gpu_assignments, gpu)));
  }
  highest_epoch_->Set(Value(node_->highest_epoch()));
  // Versions are not labels, but their numbers are gauges ("": the initial one).
  const Version version = Version::Parse(node_->committed_version()).value_or(Version::Initial());
  committed_epoch_->Set(Value(version.epoch()));
  committed_seq_->Set(Value(version.seq()));
  apply_in_progress_->Set(node_->apply_pending() ? 1 : 0);
  AdvanceTo(*windows_received_, Value(stats.windows_received));
  AdvanceTo(*windows_malformed_, Value(stats.windows_malformed));
  AdvanceTo(*windows_out_of_order_, Value(stats.windows_out_of_order));
  AdvanceTo(*loads_sent_, Value(stats.loads_sent));
  AdvanceTo(*loads_dropped_, Value(stats.loads_dropped));
  for (const auto& [phase, counter] : acks_) {
    AdvanceTo(*counter, Value(CountOf(stats.acks_by_phase, phase)));
  }
  for (const auto& [code, counter] : nacks_) {
    AdvanceTo(*counter, Value(CountOf(stats.nacks_by_code, code)));
  }
}

}  // namespace craft::agent
