#include "server/planner_metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "planner/initial_layout.h"
#include "planner/layout.h"
#include "server/replan_stages.h"
#include "wire/version.h"

namespace craft::server {
namespace {

using metrics::AdvanceTo;
using metrics::CounterFamily;
using metrics::GaugeFamily;
using metrics::IndexedGauges;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void SetAll(const std::vector<prometheus::Gauge*>& gauges, const std::vector<double>& values) {
  for (size_t i = 0; i < gauges.size(); ++i) {
    gauges[i]->Set(i < values.size() ? values[i] : kNaN);
  }
}

// Histogram buckets for bytes: 1 MiB .. 1 TiB, x4 apart.
prometheus::Histogram::BucketBoundaries ByteBuckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 1 << 20; b <= 1099511627776.0; b *= 4) buckets.push_back(b);
  return buckets;
}

// `labels` plus `more`.
prometheus::Labels With(prometheus::Labels labels, const prometheus::Labels& more) {
  labels.insert(more.begin(), more.end());
  return labels;
}

// Histogram buckets for short waits: 10 us .. 10 s, six per decade (1, 1.5,
// 2, 3, 5, 7), so that a percentile read from them is off by less than half
// a bucket.
prometheus::Histogram::BucketBoundaries ShortDurationBuckets() {
  return {0.00001, 0.000015, 0.00002, 0.00003, 0.00005, 0.00007, 0.0001, 0.00015, 0.0002, 0.0003,
          0.0005,  0.0007,   0.001,   0.0015,  0.002,   0.003,   0.005,  0.007,   0.01,   0.015,
          0.02,    0.03,     0.05,    0.07,    0.1,     0.15,    0.2,    0.3,     0.5,    0.7,
          1,       1.5,      2,       3,       5,       7,       10};
}

// min / p10 / mean over layers, as three gauges.
struct LayerSummary {
  prometheus::Gauge* min = nullptr;
  prometheus::Gauge* p10 = nullptr;
  prometheus::Gauge* mean = nullptr;

  // The three series of `family` labelled stat=min|p10|mean plus `labels`.
  static LayerSummary In(prometheus::Family<prometheus::Gauge>& family,
                         const prometheus::Labels& labels) {
    return {&family.Add(With(labels, {{"stat", "min"}})),
            &family.Add(With(labels, {{"stat", "p10"}})),
            &family.Add(With(labels, {{"stat", "mean"}}))};
  }

  void Set(const std::vector<double>& per_layer) const {
    if (per_layer.empty()) {
      min->Set(kNaN);
      p10->Set(kNaN);
      mean->Set(kNaN);
      return;
    }
    std::vector<double> sorted = per_layer;
    std::sort(sorted.begin(), sorted.end());
    // Nearest rank: the smallest value with at least 10% of the layers at or below it.
    const size_t rank = static_cast<size_t>(std::ceil(0.1 * sorted.size()));
    min->Set(sorted.front());
    p10->Set(sorted[rank == 0 ? 0 : rank - 1]);
    mean->Set(std::accumulate(sorted.begin(), sorted.end(), 0.0) / sorted.size());
  }
};

}  // namespace

// One placement group's series, all labelled group=<name>, and the group's
// components they are read from at scrape time. Every group registers the
// same families: prometheus::Registry's default InsertBehavior::Merge hands
// back the family the first group built, so each family is built once and
// holds one set of series per group.
//
// Thread-safety: the Refresh* methods and Watch run with the owner's
// refresh_mutex() held, which guards coordinator_, load_store_ and
// layout_version_; the events only touch prometheus-cpp metrics, which are
// thread-safe.
class PlannerMetrics::GroupSeries {
 public:
  GroupSeries(prometheus::Registry& r, const PlacementGroup& group);

  void Watch(const ApplyCoordinator* coordinator, const LoadStore* load_store);
  bool watched() const { return coordinator_ != nullptr && load_store_ != nullptr; }
  // The watched coordinator's leadership term; only while watched().
  int64_t epoch() const { return coordinator_->epoch(); }
  // Only while watched().
  void Refresh() const;

  void OnReplan(const ReplanOutcome& outcome);
  void OnApplyFinished(const ApplyRecord& record);

 private:
  void RefreshAgents(const ApplyCoordinator& coordinator) const;
  void RefreshLayout(const CommittedLayout& committed) const;
  void RefreshMeasured(const LoadStore& load_store, const std::string& version) const;
  void RefreshCounters(const ApplyCoordinator& coordinator, const LoadStore& load_store) const;

  const PlannerConfig config_;
  const prometheus::Labels labels_;                        // {{"group", name}}
  std::shared_ptr<const planner::Layout> initial_layout_;  // replica memory baseline

  // Guarded by the owner's refresh_mutex().
  const ApplyCoordinator* coordinator_ = nullptr;
  const LoadStore* load_store_ = nullptr;
  mutable std::string layout_version_;  // the committed version RefreshLayout last saw

  // Agents and layouts.
  prometheus::Gauge* connected_agents_;
  prometheus::Gauge* agents_out_of_sync_;
  prometheus::Gauge* agents_on_committed_;
  prometheus::Gauge* gpus_on_committed_;
  prometheus::Gauge* gpus_without_agent_;
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
  prometheus::Family<prometheus::Counter>* node_windows_rejected_;  // by node, added on demand
  prometheus::Counter* tokens_;
  std::array<prometheus::Counter*, kNumReplanResults> replans_;
  prometheus::Histogram* plan_duration_;
  std::array<prometheus::Histogram*, kNumReplanStages> replan_stages_;
  prometheus::Histogram* prepare_to_commit_;
  prometheus::Histogram* persist_;
  prometheus::Histogram* apply_transfer_bytes_;
};

PlannerMetrics::GroupSeries::GroupSeries(prometheus::Registry& r, const PlacementGroup& group)
    : config_(group.config), labels_{{"group", group.name}} {
  const int layers = config_.model.num_layers;
  const int gpus = config_.cluster.num_gpus;
  absl::StatusOr<planner::Layout> initial =
      planner::ContiguousLayout(layers, config_.model.num_experts, config_.cluster);
  if (initial.ok()) initial_layout_ = std::make_shared<const planner::Layout>(*std::move(initial));

  connected_agents_ =
      &GaugeFamily(r, "craft_planner_connected_agents", "Agents with an open stream.").Add(labels_);
  agents_out_of_sync_ = &GaugeFamily(r, "craft_planner_agents_out_of_sync",
                                     "Connected agents serving another layout version than the "
                                     "committed one (the planner re-drives its commit).")
                             .Add(labels_);
  agents_on_committed_ = &GaugeFamily(r, "craft_planner_agents_on_committed_layout",
                                      "Connected agents whose every GPU serves the committed "
                                      "layout version.")
                              .Add(labels_);
  gpus_on_committed_ = &GaugeFamily(r, "craft_planner_gpus_on_committed_layout",
                                    "GPUs (workers) of connected, in-sync agents: they serve the "
                                    "committed layout version.")
                            .Add(labels_);
  gpus_without_agent_ = &GaugeFamily(r, "craft_planner_gpus_without_agent",
                                     "Configured GPUs that no connected agent claims; no apply "
                                     "starts while this is above 0.")
                             .Add(labels_);
  GaugeFamily(r, "craft_planner_configured_gpus", "GPUs in the configured cluster.")
      .Add(labels_)
      .Set(gpus);
  GaugeFamily(r, "craft_planner_configured_nodes", "Nodes (agents) in the configured cluster.")
      .Add(labels_)
      .Set(config_.cluster.num_nodes);
  GaugeFamily(r, "craft_planner_configured_layers", "MoE layers of the configured model.")
      .Add(labels_)
      .Set(layers);
  committed_epoch_ = &GaugeFamily(r, "craft_planner_committed_layout_epoch",
                                  "Epoch part of the committed layout version <epoch>.<seq> "
                                  "(0 for the initial layout).")
                          .Add(labels_);
  committed_seq_ = &GaugeFamily(r, "craft_planner_committed_layout_seq",
                                "Sequence part of the committed layout version <epoch>.<seq>.")
                        .Add(labels_);
  apply_in_progress_ = &GaugeFamily(r, "craft_planner_apply_in_progress",
                                    "1 while an apply is preparing or waiting for commit acks.")
                            .Add(labels_);
  fenced_ = &GaugeFamily(r, "craft_planner_fenced",
                         "1 while a connected agent has seen a newer planner epoch (its hello or "
                         "a STALE_EPOCH nack): it refuses this planner, so nothing is applied.")
                 .Add(labels_);
  last_commit_timestamp_ = &GaugeFamily(r, "craft_planner_last_commit_timestamp_seconds",
                                        "Unix time of the last commit point (0: none since start).")
                                .Add(labels_);
  layer_replicas_ = IndexedGauges(
      GaugeFamily(r, "craft_planner_layer_replicas",
                  "Redundant expert replicas of a layer in the committed layout (slots beyond "
                  "one per expert)."),
      "layer", layers, labels_);
  gpu_replica_memory_ = IndexedGauges(
      GaugeFamily(r, "craft_planner_gpu_replica_memory_bytes",
                  "Expert memory a GPU holds in the committed layout beyond the initial "
                  "(replica-free) layout."),
      "gpu", gpus, labels_);

  layer_balancedness_ = IndexedGauges(
      GaugeFamily(r, "craft_planner_layer_balancedness",
                  "Measured balancedness (mean / max GPU tokens, 1 = perfect) of a layer under "
                  "the committed layout, averaged over the recent complete load windows; NaN "
                  "until a window was measured."),
      "layer", layers, labels_);
  balancedness_ = LayerSummary::In(
      GaugeFamily(r, "craft_planner_balancedness",
                  "Measured balancedness of the committed layout over layers: min, 10th "
                  "percentile (p10) and mean of craft_planner_layer_balancedness."),
      labels_);
  measured_windows_ = &GaugeFamily(r, "craft_planner_measured_windows",
                                   "Complete load windows behind the measured balancedness.")
                           .Add(labels_);

  prometheus::Family<prometheus::Gauge>& apply_layers =
      GaugeFamily(r, "craft_planner_apply_layer_balancedness",
                  "Balancedness of a layer at the last pushed plan, replayed on its planning "
                  "windows: when=before (the committed layout) and when=after (the new one).");
  apply_layer_before_ =
      IndexedGauges(apply_layers, "layer", layers, With(labels_, {{"when", "before"}}));
  apply_layer_after_ =
      IndexedGauges(apply_layers, "layer", layers, With(labels_, {{"when", "after"}}));
  prometheus::Family<prometheus::Gauge>& apply_summary =
      GaugeFamily(r, "craft_planner_apply_balancedness",
                  "min / p10 / mean over layers of craft_planner_apply_layer_balancedness.");
  apply_before_ = LayerSummary::In(apply_summary, With(labels_, {{"when", "before"}}));
  apply_after_ = LayerSummary::In(apply_summary, With(labels_, {{"when", "after"}}));
  apply_before_.Set({});
  apply_after_.Set({});
  SetAll(apply_layer_before_, {});
  SetAll(apply_layer_after_, {});

  applies_started_ =
      &CounterFamily(r, "craft_planner_applies_started_total", "Two-phase applies started.")
           .Add(labels_);
  prometheus::Family<prometheus::Counter>& applies = CounterFamily(
      r, "craft_planner_applies_total", "Applies finished, by result (committed or aborted).");
  applies_committed_ = &applies.Add(With(labels_, {{"result", "committed"}}));
  applies_aborted_ = &applies.Add(With(labels_, {{"result", "aborted"}}));
  prometheus::Family<prometheus::Counter>& aborts =
      CounterFamily(r, "craft_planner_apply_aborts_total", "Applies aborted, by reason.");
  for (int i = 0; i < kNumAbortReasons; ++i) {
    aborts_[i] =
        &aborts.Add(With(labels_, {{"reason", std::string(AbortReasonName(AbortReason(i)))}}));
  }
  prometheus::Family<prometheus::Counter>& nacks = CounterFamily(
      r, "craft_planner_agent_nacks_total", "Nacks received from agents, by error code.");
  for (int code = craft::v1::ErrorCode_MIN + 1; code <= craft::v1::ErrorCode_MAX; ++code) {
    if (!craft::v1::ErrorCode_IsValid(code)) continue;
    nacks_[code] = &nacks.Add(With(
        labels_,
        {{"code", absl::AsciiStrToLower(craft::v1::ErrorCode_Name(craft::v1::ErrorCode(code)))}}));
  }
  prometheus::Family<prometheus::Counter>& resyncs =
      CounterFamily(r, "craft_planner_resyncs_total",
                    "Commits of the committed layout re-driven to nodes not on it, by what "
                    "became of them (started, completed, failed: retried).");
  resyncs_started_ = &resyncs.Add(With(labels_, {{"result", "started"}}));
  resyncs_completed_ = &resyncs.Add(With(labels_, {{"result", "completed"}}));
  resyncs_failed_ = &resyncs.Add(With(labels_, {{"result", "failed"}}));
  in_doubt_aborted_ = &CounterFamily(r, "craft_planner_in_doubt_aborted_total",
                                     "Prepared versions a reconnecting agent was in doubt about "
                                     "and that were never committed: aborted.")
                           .Add(labels_);
  stale_answers_ = &CounterFamily(r, "craft_planner_stale_answers_total",
                                  "Acks and Nacks ignored because they answer no awaited message.")
                        .Add(labels_);
  agent_connects_ = &CounterFamily(r, "craft_planner_agent_connects_total",
                                   "Agent streams accepted (first connects and reconnects).")
                         .Add(labels_);
  agent_disconnects_ =
      &CounterFamily(r, "craft_planner_agent_disconnects_total", "Agent streams that ended.")
           .Add(labels_);
  transfer_bytes_ = &CounterFamily(r, "craft_planner_transfer_bytes_total",
                                   "Expert bytes copied between GPUs by committed applies.")
                         .Add(labels_);
  windows_ingested_ = &CounterFamily(r, "craft_planner_load_windows_ingested_total",
                                     "Per-GPU load windows accepted into the load store.")
                           .Add(labels_);
  prometheus::Family<prometheus::Counter>& rejected =
      CounterFamily(r, "craft_planner_load_windows_rejected_total",
                    "Per-GPU load windows rejected, by reason (the stream continues).");
  for (int i = 0; i < kNumRejectReasons; ++i) {
    windows_rejected_[i] =
        &rejected.Add(With(labels_, {{"reason", std::string(RejectReasonName(RejectReason(i)))}}));
  }
  node_windows_rejected_ =
      &CounterFamily(r, "craft_planner_node_windows_rejected_total",
                     "Per-GPU load windows rejected, by node: who sends bad windows (at most "
                     "cluster.num_nodes series).");
  tokens_ = &CounterFamily(r, "craft_planner_tokens_total",
                           "Tokens in the ingested load windows: token-to-expert assignments / "
                           "(layers x top_k).")
                 .Add(labels_);
  prometheus::Family<prometheus::Counter>& replans =
      CounterFamily(r, "craft_planner_replans_total", "Replans, by result.");
  for (int i = 0; i < kNumReplanResults; ++i) {
    replans_[i] =
        &replans.Add(With(labels_, {{"result", std::string(ReplanResultName(ReplanResult(i)))}}));
  }
  plan_duration_ = &metrics::HistogramFamily(r, "craft_planner_plan_duration_seconds",
                                             "Time to compute one plan (benefit curves, "
                                             "allocation, placement).")
                        .Add(labels_, metrics::DurationBuckets());
  prometheus::Family<prometheus::Histogram>& stages = metrics::HistogramFamily(
      r, "craft_planner_replan_stage_seconds",
      "Time one replan spent in a stage: trace (the load snapshot), plan, evaluate (stabilise, "
      "gate, transfer plan or frontier step), prepare (starting the apply).");
  for (int i = 0; i < kNumReplanStages; ++i) {
    replan_stages_[i] =
        &stages.Add(With(labels_, {{"stage", std::string(ReplanStageName(ReplanStage(i)))}}),
                    metrics::DurationBuckets());
  }
  prepare_to_commit_ =
      &metrics::HistogramFamily(r, "craft_planner_apply_prepare_to_commit_seconds",
                                "From Prepare sent to the commit point (every agent PREPARED).")
           .Add(labels_, metrics::DurationBuckets());
  persist_ = &metrics::HistogramFamily(r, "craft_planner_apply_persist_seconds",
                                       "Time the commit point's save took: the state file "
                                       "written and fsynced, or the etcd transaction.")
                  .Add(labels_, ShortDurationBuckets());
  apply_transfer_bytes_ =
      &metrics::HistogramFamily(r, "craft_planner_apply_transfer_bytes",
                                "Expert bytes one committed apply copies between GPUs.")
           .Add(labels_, ByteBuckets());
}

void PlannerMetrics::GroupSeries::Watch(const ApplyCoordinator* coordinator,
                                        const LoadStore* load_store) {
  coordinator_ = coordinator;
  load_store_ = load_store;
  layout_version_.clear();
}

void PlannerMetrics::GroupSeries::OnReplan(const ReplanOutcome& outcome) {
  replans_[static_cast<int>(outcome.result)]->Increment();
  for (const StageTime& stage : outcome.stage_times) {
    const double seconds = absl::ToDoubleSeconds(stage.duration);
    replan_stages_[static_cast<int>(stage.stage)]->Observe(seconds);
    if (stage.stage == ReplanStage::kPlan) plan_duration_->Observe(seconds);
  }
  if (outcome.result == ReplanResult::kPushed && !outcome.balancedness_before.empty()) {
    SetAll(apply_layer_before_, outcome.balancedness_before);
    SetAll(apply_layer_after_, outcome.balancedness_after);
    apply_before_.Set(outcome.balancedness_before);
    apply_after_.Set(outcome.balancedness_after);
  }
}

void PlannerMetrics::GroupSeries::OnApplyFinished(const ApplyRecord& record) {
  if (record.committed || record.abort_reason == AbortReason::kPersistFailed) {
    persist_->Observe(absl::ToDoubleSeconds(record.persist_duration));
  }
  if (!record.committed) return;  // aborts are counted from CoordinatorStats
  prepare_to_commit_->Observe(absl::ToDoubleSeconds(record.prepare_duration));
  apply_transfer_bytes_->Observe(static_cast<double>(record.transfer_bytes));
  last_commit_timestamp_->Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

void PlannerMetrics::GroupSeries::Refresh() const {
  RefreshAgents(*coordinator_);
  const CommittedLayout committed = coordinator_->committed();
  RefreshLayout(committed);
  RefreshMeasured(*load_store_, committed.version);
  RefreshCounters(*coordinator_, *load_store_);
}

void PlannerMetrics::GroupSeries::RefreshAgents(const ApplyCoordinator& coordinator) const {
  const std::vector<AgentSnapshot> agents = coordinator.Agents();
  const std::vector<std::string> out_of_sync = coordinator.OutOfSyncNodes();
  const std::set<std::string> behind(out_of_sync.begin(), out_of_sync.end());
  int connected = 0, in_sync = 0, in_sync_gpus = 0;
  for (const AgentSnapshot& agent : agents) {
    if (agent.windows_rejected > 0) {
      AdvanceTo(node_windows_rejected_->Add(With(labels_, {{"node", agent.node}})),
                static_cast<double>(agent.windows_rejected));
    }
    if (!agent.connected) continue;
    ++connected;
    if (behind.count(agent.node) == 0) {
      ++in_sync;
      in_sync_gpus += static_cast<int>(agent.gpus.size());
    }
  }
  connected_agents_->Set(connected);
  agents_out_of_sync_->Set(static_cast<double>(out_of_sync.size()));
  agents_on_committed_->Set(in_sync);
  gpus_on_committed_->Set(in_sync_gpus);
  gpus_without_agent_->Set(static_cast<double>(coordinator.GpusWithoutAgent().size()));
  apply_in_progress_->Set(coordinator.apply_in_progress() ? 1 : 0);
  fenced_->Set(coordinator.fenced() ? 1 : 0);
}

void PlannerMetrics::GroupSeries::RefreshLayout(const CommittedLayout& committed) const {
  if (committed.version == layout_version_ || committed.layout == nullptr) return;
  layout_version_ = committed.version;
  // Versions are not labels, but their numbers are gauges.
  const Version version = Version::Parse(committed.version).value_or(Version::Initial());
  committed_epoch_->Set(static_cast<double>(version.epoch()));
  committed_seq_->Set(static_cast<double>(version.seq()));
  const planner::Layout& layout = *committed.layout;
  for (int l = 0; l < layout.num_layers() && l < static_cast<int>(layer_replicas_.size()); ++l) {
    layer_replicas_[l]->Set(layout.layers[l].num_slots() - layout.num_experts);
  }
  for (int g = 0; g < static_cast<int>(gpu_replica_memory_.size()); ++g) {
    const int baseline = initial_layout_ != nullptr ? initial_layout_->SlotsOnGpu(g) : 0;
    gpu_replica_memory_[g]->Set(static_cast<double>(layout.SlotsOnGpu(g) - baseline) *
                                static_cast<double>(config_.model.bytes_per_expert));
  }
}

void PlannerMetrics::GroupSeries::RefreshMeasured(const LoadStore& load_store,
                                                  const std::string& version) const {
  const std::optional<MeasuredBalance> measured = load_store.Measured(version);
  const std::vector<double> per_layer = measured ? measured->per_layer : std::vector<double>{};
  SetAll(layer_balancedness_, per_layer);
  balancedness_.Set(per_layer);
  measured_windows_->Set(measured ? measured->windows : 0);
}

void PlannerMetrics::GroupSeries::RefreshCounters(const ApplyCoordinator& coordinator,
                                                  const LoadStore& load_store) const {
  const CoordinatorStats stats = coordinator.stats();
  AdvanceTo(*applies_started_, static_cast<double>(stats.applies_started));
  AdvanceTo(*applies_committed_, static_cast<double>(stats.applies_committed));
  AdvanceTo(*applies_aborted_, static_cast<double>(stats.applies_aborted));
  for (int i = 0; i < kNumAbortReasons; ++i) {
    AdvanceTo(*aborts_[i], static_cast<double>(stats.aborts_by_reason[i]));
  }
  for (const auto& [code, counter] : nacks_) {
    AdvanceTo(*counter, static_cast<double>(stats.nacks_by_code[code]));
  }
  AdvanceTo(*stale_answers_, static_cast<double>(stats.stale_answers_ignored));
  AdvanceTo(*resyncs_started_, static_cast<double>(stats.resyncs_started));
  AdvanceTo(*resyncs_completed_, static_cast<double>(stats.resyncs_completed));
  AdvanceTo(*resyncs_failed_, static_cast<double>(stats.resyncs_failed));
  AdvanceTo(*in_doubt_aborted_, static_cast<double>(stats.in_doubt_aborted));
  AdvanceTo(*agent_connects_, static_cast<double>(stats.agent_connects));
  AdvanceTo(*agent_disconnects_, static_cast<double>(stats.agent_disconnects));
  AdvanceTo(*transfer_bytes_, static_cast<double>(stats.transfer_bytes_committed));
  AdvanceTo(*windows_ingested_, static_cast<double>(load_store.windows_ingested()));
  for (int i = 0; i < kNumRejectReasons; ++i) {
    AdvanceTo(*windows_rejected_[i], static_cast<double>(load_store.rejected(RejectReason(i))));
  }
  const double per_token =
      static_cast<double>(config_.model.num_layers) * std::max(config_.model.top_k, 1);
  AdvanceTo(*tokens_, static_cast<double>(load_store.assignments_ingested()) / per_token);
}

PlannerMetrics::PlannerMetrics(const std::vector<PlacementGroup>& groups) {
  prometheus::Registry& r = registry();
  for (const PlacementGroup& group : groups) {
    if (groups_.count(group.name) == 0) {
      groups_[group.name] = std::make_unique<GroupSeries>(r, group);
    }
  }
  epoch_ = &GaugeFamily(r, "craft_planner_epoch", "This planner's leadership term.").Add({});
  leader_ = &GaugeFamily(r, "craft_planner_leader",
                         "1 while this planner leads (always, without high availability); 0 on "
                         "a follower, whose other planner gauges are not its own.")
                 .Add({});
  load_handling_ =
      &metrics::HistogramFamily(r, "craft_planner_agent_load_handling_seconds",
                                "Time the planner took to handle one NodeLoad of an agent "
                                "stream (of any group), from its read to its last window "
                                "ingested, waits for the coordinator's and the load store's "
                                "locks included.")
           .Add({}, ShortDurationBuckets());
}

PlannerMetrics::~PlannerMetrics() = default;

void PlannerMetrics::OnAgentLoadHandled(absl::Duration handling) {
  load_handling_->Observe(absl::ToDoubleSeconds(handling));
}

PlannerMetrics::GroupSeries* PlannerMetrics::Find(const std::string& group) const {
  const auto it = groups_.find(group);
  return it != groups_.end() ? it->second.get() : nullptr;
}

void PlannerMetrics::Watch(const std::string& group, const ApplyCoordinator* coordinator,
                           const LoadStore* load_store) {
  absl::MutexLock lock(&refresh_mutex());
  GroupSeries* series = Find(group);
  if (series == nullptr) return;
  series->Watch(coordinator, load_store);
  // A planner leads while it serves any of its groups.
  const bool leads = std::any_of(groups_.begin(), groups_.end(),
                                 [](const auto& entry) { return entry.second->watched(); });
  leader_->Set(leads ? 1 : 0);
}

void PlannerMetrics::OnReplan(const std::string& group, const ReplanOutcome& outcome) {
  if (GroupSeries* series = Find(group)) series->OnReplan(outcome);
}

void PlannerMetrics::OnApplyFinished(const std::string& group, const ApplyRecord& record) {
  if (GroupSeries* series = Find(group)) series->OnApplyFinished(record);
}

void PlannerMetrics::Refresh() const {
  // Every group's coordinator runs under this planner's term; should they
  // differ for a moment, the newest is the planner's.
  int64_t epoch = -1;
  for (const auto& [name, series] : groups_) {
    if (!series->watched()) continue;
    series->Refresh();
    epoch = std::max(epoch, series->epoch());
  }
  if (epoch >= 0) epoch_->Set(static_cast<double>(epoch));
}

}  // namespace craft::server
