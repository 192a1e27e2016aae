// craft-planner's Prometheus metrics (metric names in README.md,
// "Dashboards"). Scrape-time values (agents, layouts, measured balance,
// counters mirrored from CoordinatorStats and the LoadStore) are read from the
// watched components at every scrape; histograms and the last apply's
// balancedness come from PlannerObserver events.
//
//   auto metrics = std::make_shared<PlannerMetrics>(config);
//   ServerOptions options;
//   options.observer = metrics.get();
//   auto server = PlannerServer::Start(config, options);
//   metrics->Watch((*server)->coordinator(), (*server)->load_store());
//   metrics_server->Register(metrics);
//   ...
//   metrics->Watch(nullptr, nullptr);  // before the server is destroyed
//
// Labels: layer (0 .. L-1), gpu (0 .. D-1) and enumerated reasons and
// stages only.
//
// Thread-safety: thread-safe.
#ifndef CRAFT_SERVER_PLANNER_METRICS_H_
#define CRAFT_SERVER_PLANNER_METRICS_H_

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "planner/layout.h"
#include "server/apply_coordinator.h"
#include "server/config.h"
#include "server/load_store.h"
#include "server/planner_observer.h"
#include "server/replan_loop.h"
#include "server/replan_stages.h"

namespace craft::server {

class PlannerMetrics final : public metrics::ScrapedRegistry, public PlannerObserver {
 public:
  explicit PlannerMetrics(const PlannerConfig& config);

  // Where scrape-time values come from; nulls detach (waiting for a scrape
  // in progress). The components must stay valid until detached.
  void Watch(const ApplyCoordinator* coordinator, const LoadStore* load_store);

  // PlannerObserver.
  void OnReplan(const ReplanOutcome& outcome) override;
  void OnApplyFinished(const ApplyRecord& record) override;
  void OnAgentLoadHandled(absl::Duration handling) override;

 private:
  // min / p10 / mean over layers, as three gauges.
  struct LayerSummary {
    prometheus::Gauge* min = nullptr;
    prometheus::Gauge* p10 = nullptr;
    prometheus::Gauge* mean = nullptr;
    void Set(const std::vector<double>& per_layer) const;
  };

  void Refresh() const override;
  void RefreshAgents(const ApplyCoordinator& coordinator) const;
  void RefreshLayout(const CommittedLayout& committed) const;
  void RefreshMeasured(const LoadStore& load_store, const std::string& version) const;
  void RefreshCounters(const ApplyCoordinator& coordinator, const LoadStore& load_store) const;

  const PlannerConfig config_;
  std::shared_ptr<const planner::Layout> initial_layout_;  // replica memory baseline

  // Guarded by refresh_mutex().
  const ApplyCoordinator* coordinator_ = nullptr;
  const LoadStore* load_store_ = nullptr;
  mutable std::string layout_version_;  // the committed version RefreshLayout last saw

  // Agents and layouts.
  prometheus::Gauge* connected_agents_;
  prometheus::Gauge* agents_out_of_sync_;
  prometheus::Gauge* agents_on_committed_;
  prometheus::Gauge* gpus_on_committed_;
  prometheus::Gauge* gpus_without_agent_;
  prometheus::Gauge* epoch_;
  prometheus::Gauge* leader_;
  prometheus::Gauge* committed_epoch_;
  prometheus::Gauge* committed_seq_;
  prometheus::Gauge* apply_in_progress_;
  prometheus::Gauge* fenced_;
  prometheus::Gauge* last_commit_timestamp_;
  std::vector<prometheus::Gauge*> layer_replicas_;
  std::vector<prometheus::Gauge*> gpu_replica_memory_;
  // Measured balancedness of the committed layout.
  std::vector<prometheus::Gauge*> layer_balancedness_;
  LayerSummary balancedness_;
  prometheus::Gauge* measured_windows_;
  // The last pushed plan: the committed layout (before) and the new one
  // (after), replayed on the planning windows.
  std::vector<prometheus::Gauge*> apply_layer_before_;
  std::vector<prometheus::Gauge*> apply_layer_after_;
  LayerSummary apply_before_;
  LayerSummary apply_after_;
  // Counters.
  prometheus::Counter* applies_started_;
  prometheus::Counter* applies_committed_;
  prometheus::Counter* applies_aborted_;
  std::array<prometheus::Counter*, kNumAbortReasons> aborts_;
  std::map<int, prometheus::Counter*> nacks_;  // by craft.v1.ErrorCode
  prometheus::Counter* stale_answers_;
  prometheus::Counter* resyncs_started_;
  prometheus::Counter* resyncs_completed_;
  prometheus::Counter* resyncs_failed_;
  prometheus::Counter* in_doubt_aborted_;
  prometheus::Counter* agent_connects_;
  prometheus::Counter* agent_disconnects_;
  prometheus::Counter* transfer_bytes_;
  prometheus::Counter* windows_ingested_;
  std::array<prometheus::Counter*, kNumRejectReasons> windows_rejected_;
  prometheus::Family<prometheus::Counter>* node_windows_rejected_ = nullptr;
  prometheus::Counter* tokens_;
  std::array<prometheus::Counter*, kNumReplanResults> replans_;
  prometheus::Histogram* plan_duration_;
  std::array<prometheus::Histogram*, kNumReplanStages> replan_stages_;
  prometheus::Histogram* prepare_to_commit_;
  prometheus::Histogram* persist_;
  prometheus::Histogram* apply_transfer_bytes_;
  prometheus::Histogram* load_handling_;
};

}  // namespace craft::server

#endif  // CRAFT_SERVER_PLANNER_METRICS_H_
