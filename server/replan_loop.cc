#include "server/replan_loop.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "planner/plan.h"
#include "planner/replay.h"
#include "planner/transfer/apply_steps.h"
#include "planner/transfer/stabilize.h"
#include "planner/transfer/transfer_plan.h"

namespace craft::server {
namespace {

// Per-layer benefit curves and choices for Explain; under the roofline
// objective also each layer's modelled ms, per candidate and as committed.
void DescribePlan(const planner::PlanResult& plan, const planner::LayoutStats& committed,
                  const planner::Layout& committed_layout, const planner::LoadTrace& trace,
                  const planner::PlanOptions& options, craft::v1::ExplainResponse* explain) {
  const bool roofline =
      options.objective == planner::CraftObjective::kRoofline && options.roofline.has_value();
  for (int l = 0; l < static_cast<int>(plan.replicas_per_layer.size()); ++l) {
    craft::v1::LayerPlan* layer = explain->add_layers();
    layer->set_layer(l);
    if (l < static_cast<int>(plan.curves.size())) {
      const planner::BenefitCurve& curve = plan.curves[l];
      layer->mutable_candidate_replicas()->Add(curve.replicas.begin(), curve.replicas.end());
      layer->mutable_predicted_balancedness()->Add(curve.balancedness.begin(),
                                                   curve.balancedness.end());
      for (double us : curve.modelled_us) layer->add_predicted_ms(us / 1000);
    }
    if (roofline && l < committed_layout.num_layers()) {
      layer->set_committed_ms(options.roofline->MeanLayerUs(committed_layout.layers[l], trace, l) /
                              1000);
    }
    layer->set_chosen_replicas(plan.replicas_per_layer[l]);
    if (l < static_cast<int>(committed.layers.size())) {
      layer->set_measured_balancedness(committed.layers[l].balancedness);
    }
  }
}

std::string Percent(double fraction) { return absl::StrFormat("%.2f%%", 100 * fraction); }

std::string Bytes(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.2f GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.1f MB", bytes / 1e6);
  if (bytes >= 1e3) return absl::StrFormat("%.1f kB", bytes / 1e3);
  return absl::StrFormat("%.0f bytes", bytes);
}

// An incremental plan's frontier for Explain: at most kMaxFrontierPoints,
// always the first, the chosen (`target`), the applied (`applied`) and the
// last point.
void DescribeFrontier(const planner::IncrementalPlan& plan, const planner::NetBenefitModel& model,
                      int target, int applied, std::optional<int64_t> headroom,
                      craft::v1::ExplainResponse* explain) {
  constexpr int kMaxFrontierPoints = 64;
  const std::vector<double> net = planner::NetBenefits(plan, model);
  const int points = static_cast<int>(plan.frontier.size());
  const int stride = std::max(1, (points + kMaxFrontierPoints - 5) / (kMaxFrontierPoints - 4));
  explain->clear_frontier();
  for (int k = 0; k < points; ++k) {
    if (k % stride != 0 && k != target && k != applied && k != points - 1) continue;
    const planner::FrontierPoint& point = plan.frontier[k];
    craft::v1::FrontierPoint* out = explain->add_frontier();
    out->set_moved_fraction(point.moved_fraction);
    out->set_max_bytes_into_gpu(point.max_bytes_into_gpu);
    out->set_predicted_balancedness(point.predicted_balancedness);
    out->set_predicted_step_time(point.predicted_step_time);
    out->set_net_benefit_s(net[k]);
    out->set_chosen(k == target);
    out->set_applied(k == applied);
  }
  explain->set_staging_headroom_bytes(headroom.value_or(-1));
}

// Per layer, the replicas a layout gives it and the balancedness measured on
// the committed layout (an incremental plan has no benefit curves).
void DescribeLayers(const planner::Layout& layout, const planner::LayoutStats& committed,
                    craft::v1::ExplainResponse* explain) {
  explain->clear_layers();
  for (int l = 0; l < layout.num_layers(); ++l) {
    craft::v1::LayerPlan* layer = explain->add_layers();
    layer->set_layer(l);
    layer->set_chosen_replicas(layout.layers[l].num_slots() - layout.num_experts);
    if (l < static_cast<int>(committed.layers.size())) {
      layer->set_measured_balancedness(committed.layers[l].balancedness);
    }
  }
}

std::vector<double> PerLayerBalancedness(const planner::LayoutStats& stats) {
  std::vector<double> balancedness;
  for (const auto& layer : stats.layers) balancedness.push_back(layer.balancedness);
  return balancedness;
}

constexpr absl::Duration kStepPoll = absl::Milliseconds(100);

constexpr absl::string_view kReplanResultNames[kNumReplanResults] = {"pushed", "gated", "no_loads",
                                                                     "skipped", "failed"};

bool EqualSlotTotals(const planner::Layout& layout) {
  for (int g = 1; g < layout.cluster.num_gpus; ++g) {
    if (layout.SlotsOnGpu(g) != layout.SlotsOnGpu(0)) return false;
  }
  return true;
}

}  // namespace

absl::string_view ReplanResultName(ReplanResult result) {
  return kReplanResultNames[static_cast<int>(result)];
}

ReplanLoop::ReplanLoop(const PlannerConfig& config, LoadStore* load_store,
                       ApplyCoordinator* coordinator, Clock* clock, Observer observer)
    : config_(config),
      load_store_(load_store),
      coordinator_(coordinator),
      clock_(clock),
      observer_(std::move(observer)) {}

ReplanLoop::~ReplanLoop() { Stop(); }

void ReplanLoop::PoolWith(std::vector<const LoadStore*> peers) { peers_ = std::move(peers); }

void ReplanLoop::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void ReplanLoop::Stop() {
  std::deque<Job> abandoned;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_ = true;
    abandoned.swap(jobs_);
  }
  if (thread_.joinable()) thread_.join();
  // Post refuses jobs once stopping_ is set, so nothing was queued since.
  for (Job& job : abandoned) job(false);
}

void ReplanLoop::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void ReplanLoop::Trigger() {
  absl::MutexLock lock(&mu_);
  triggered_ = true;
  wake_ = true;
}

bool ReplanLoop::Post(Job job) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || static_cast<int>(jobs_.size()) >= kMaxQueuedJobs) return false;
  jobs_.push_back(std::move(job));
  wake_ = true;
  return true;
}

void ReplanLoop::Run() {
  absl::Time next_replan = clock_->Now() + config_.replan_interval;
  mu_.Lock();
  while (!stopping_) {
    absl::Time wake_at = next_replan;
    // Lock order: loop, then coordinator (the coordinator never calls into
    // the loop with its own lock held).
    if (std::optional<absl::Time> deadline = coordinator_->NextDeadline()) {
      wake_at = std::min(wake_at, *deadline);
    }
    // The next step of a move starts once the previous apply is over; the
    // coordinator does not call back, so look every kStepPoll.
    if (Continuing()) wake_at = std::min(wake_at, clock_->Now() + kStepPoll);
    if (!wake_) clock_->SleepUntil(wake_at, &mu_, &wake_);
    wake_ = false;
    if (stopping_) break;
    std::deque<Job> jobs;
    jobs.swap(jobs_);
    const bool triggered = triggered_;
    triggered_ = false;
    mu_.Unlock();

    for (Job& job : jobs) job(true);
    coordinator_->CheckTimeouts();
    const bool next_step = Continuing() && !coordinator_->apply_in_progress();
    if (triggered || next_step || clock_->Now() >= next_replan) {
      RunOnce(/*force=*/false);
      next_replan = clock_->Now() + config_.replan_interval;
    }
    mu_.Lock();
  }
  mu_.Unlock();
}

ReplanOutcome ReplanLoop::RunOnce(bool force) {
  craft::v1::ExplainResponse explain;
  explain.set_algorithm(std::string(planner::AlgorithmName(config_.plan.algorithm)));
  StageTimer stages(clock_);
  ReplanOutcome outcome = Decide(force, &stages, &explain);
  outcome.stage_times = stages.times();
  explain.set_decision(outcome.decision);
  explain.set_version(outcome.version);
  CRAFT_LOG(INFO) << "replan: " << outcome.decision;
  {
    absl::MutexLock lock(&explain_mu_);
    last_explain_ = std::move(explain);
  }
  if (observer_) observer_(outcome);
  return outcome;
}

craft::v1::ExplainResponse ReplanLoop::LastExplain() const {
  absl::MutexLock lock(&explain_mu_);
  return last_explain_;
}

ReplanOutcome ReplanLoop::Apply(const planner::Layout& layout, const std::string& what,
                                ReplanResult result, StageTimer* stages) {
  ReplanOutcome outcome;
  absl::StatusOr<std::string> version = coordinator_->StartApply(layout);
  stages->Lap(ReplanStage::kPrepare);
  if (!version.ok()) {
    outcome.decision =
        absl::StrCat(what, "; the apply could not start: ", version.status().message());
    outcome.result = ReplanResult::kFailed;
    return outcome;
  }
  outcome.decision = absl::StrCat(what, "; applying ", *version);
  outcome.version = *version;
  outcome.result = result;
  return outcome;
}

ReplanOutcome ReplanLoop::Decide(bool force, StageTimer* stages,
                                 craft::v1::ExplainResponse* explain) {
  auto skipped = [](std::string why) {
    ReplanOutcome outcome;
    outcome.decision = std::move(why);
    outcome.result = ReplanResult::kSkipped;
    return outcome;
  };
  if (coordinator_->fenced()) return skipped("not pushing: a newer planner epoch was seen");
  if (coordinator_->apply_in_progress()) return skipped("skipped: an apply is in progress");
  if (std::vector<int> missing = coordinator_->GpusWithoutAgent(); !missing.empty()) {
    return skipped(
        absl::StrCat("skipped: GPUs [", absl::StrJoin(missing, ","), "] have no connected agent"));
  }
  if (std::vector<std::string> behind = coordinator_->OutOfSyncNodes(); !behind.empty()) {
    return skipped(absl::StrCat("skipped: nodes [", absl::StrJoin(behind, ","),
                                "] are being resynchronised to the committed version"));
  }
  const CommittedLayout committed = coordinator_->committed();
  stages->Mark();
  const planner::LoadTrace trace = PooledTrace(*load_store_, peers_);
  stages->Lap(ReplanStage::kTrace);
  if (continuation_.has_value()) {
    if (committed.version == continuation_->version) {
      return NextStep(
          absl::StrCat("continuing towards frontier point ", continuation_->target, ": "), trace,
          stages, explain);
    }
    CRAFT_LOG(WARNING) << "dropping the rest of the move to frontier point "
                       << continuation_->target << ": the committed version is "
                       << committed.version << ", not its last step's " << continuation_->version;
    continuation_.reset();
  }
  if (trace.num_windows() == 0) {
    return ReplanOutcome{"no complete load window yet", "", ReplanResult::kNoLoads, {}, {}, {}};
  }
  // Incremental moves keep every GPU's slot total, so they cannot start from
  // a layout whose totals differ: the initial layout of a shape whose L x E
  // slots do not divide over the GPUs (DeepSeek's 58 x 256 on 1,024 or 4,096
  // GPUs). That first plan is fresh; the ones after it are incremental.
  const ReplanMethod method =
      config_.replan_method == ReplanMethod::kIncremental && !EqualSlotTotals(*committed.layout)
          ? ReplanMethod::kFresh
          : config_.replan_method;
  explain->set_method(std::string(ReplanMethodName(method)));
  return method == ReplanMethod::kIncremental
             ? DecideIncremental(force, trace, committed, stages, explain)
             : DecideFresh(force, trace, committed, stages, explain);
}

ReplanOutcome ReplanLoop::DecideFresh(bool force, const planner::LoadTrace& trace,
                                      const CommittedLayout& committed, StageTimer* stages,
                                      craft::v1::ExplainResponse* explain) {
  // `measured` carries what was computed so far into every outcome.
  ReplanOutcome measured;
  auto with_measurements = [&measured](ReplanOutcome outcome) {
    outcome.balancedness_before = measured.balancedness_before;
    outcome.balancedness_after = measured.balancedness_after;
    return outcome;
  };
  auto nothing = [&](std::string why, ReplanResult result) {
    return with_measurements(ReplanOutcome{std::move(why), "", result, {}, {}, {}});
  };
  auto push = [&](const planner::Layout& layout, const std::string& what) {
    return with_measurements(Apply(layout, what, ReplanResult::kPushed, stages));
  };

  absl::StatusOr<planner::PlanResult> plan = planner::Plan(trace, config_.plan);
  stages->Lap(ReplanStage::kPlan);
  if (!plan.ok()) {
    return nothing(absl::StrCat("planning failed: ", plan.status().message()),
                   ReplanResult::kFailed);
  }
  explain->set_budget(plan->budget);
  absl::StatusOr<planner::Layout> stable = planner::Stabilize(*committed.layout, plan->layout);
  absl::StatusOr<planner::LayoutStats> now = planner::EvaluateLayout(*committed.layout, trace);
  absl::StatusOr<planner::LayoutStats> next =
      stable.ok() ? planner::EvaluateLayout(*stable, trace) : stable.status();
  absl::StatusOr<planner::TransferPlan> transfers =
      stable.ok()
          ? planner::BuildTransferPlan(*committed.layout, *stable, config_.model.bytes_per_expert)
          : stable.status();
  for (const absl::Status& status :
       {stable.status(), now.status(), next.status(), transfers.status()}) {
    if (!status.ok()) {
      return nothing(absl::StrCat("evaluation failed: ", status.message()), ReplanResult::kFailed);
    }
  }
  DescribePlan(*plan, *now, *committed.layout, trace, config_.plan, explain);
  measured.balancedness_before = PerLayerBalancedness(*now);
  measured.balancedness_after = PerLayerBalancedness(*next);
  explain->set_predicted_balancedness(next->mean_balancedness);

  // The gate weighs the step time the objective optimises: modelled ms under
  // roofline (a replica's weight read counts), else tokens.
  double step_now = now->step_time, step_next = next->step_time;
  std::string step_unit = "tokens";
  if (config_.plan.objective == planner::CraftObjective::kRoofline) {
    absl::StatusOr<double> us_now =
        planner::ObjectiveStepTime(*committed.layout, trace, config_.plan);
    absl::StatusOr<double> us_next = planner::ObjectiveStepTime(*stable, trace, config_.plan);
    if (!us_now.ok() || !us_next.ok()) {
      return nothing("roofline evaluation failed", ReplanResult::kFailed);
    }
    step_now = *us_now / 1000, step_next = *us_next / 1000, step_unit = "ms";
  }
  const double gain = step_now > 0 ? 1.0 - step_next / step_now : 0.0;
  const double transfer_s = static_cast<double>(transfers->max_bytes_received_by_a_gpu) /
                            (config_.transfer_gbps * 1e9 / 8);
  const double benefit_s = config_.horizon_s * gain;
  const std::string numbers = absl::StrFormat(
      "modelled gain %s (threshold %s), benefit %.3f s over the %.0f s horizon vs transfer "
      "%.3f s, balancedness %.4f -> %.4f, modelled step %.4g -> %.4g %s, %d windows",
      Percent(gain), Percent(config_.gain_threshold), benefit_s, config_.horizon_s, transfer_s,
      now->mean_balancedness, next->mean_balancedness, step_now, step_next, step_unit,
      trace.num_windows());
  stages->Lap(ReplanStage::kEvaluate);
  if (force) return push(*stable, absl::StrCat("forced push (gate bypassed): ", numbers));
  if (gain > config_.gain_threshold && benefit_s > transfer_s) {
    return push(*stable, absl::StrCat("pushing: ", numbers));
  }
  const std::string why =
      gain <= config_.gain_threshold ? "gain below threshold" : "benefit below transfer cost";
  return nothing(absl::StrCat("not pushing, ", why, ": ", numbers), ReplanResult::kGated);
}

std::optional<int64_t> ReplanLoop::StepLimit() const {
  std::optional<int64_t> limit = coordinator_->MinStagingHeadroom();
  if (config_.max_step_bytes > 0) {
    const int64_t configured = static_cast<int64_t>(config_.max_step_bytes);
    limit = limit.has_value() ? std::min(*limit, configured) : configured;
  }
  return limit;
}

ReplanOutcome ReplanLoop::DecideIncremental(bool force, const planner::LoadTrace& trace,
                                            const CommittedLayout& committed, StageTimer* stages,
                                            craft::v1::ExplainResponse* explain) {
  planner::IncrementalOptions options;
  options.budget = config_.plan.budget.value_or(0);  // the config refuses auto here
  options.bytes_per_expert = config_.model.bytes_per_expert;
  options.limit.max_moved_fraction = config_.max_moved_fraction;
  options.threads = config_.plan.threads;
  if (config_.plan.uniform) {
    const int gpus = config_.plan.cluster.num_gpus;
    options.uniform_redundant_per_layer = config_.plan.redundant_per_layer.value_or(gpus);
    options.budget = *options.uniform_redundant_per_layer * trace.num_layers() / gpus;  // shown
  }
  explain->set_budget(options.budget);
  absl::StatusOr<planner::IncrementalPlan> plan =
      planner::PlanIncremental(*committed.layout, trace, options);
  stages->Lap(ReplanStage::kPlan);
  if (!plan.ok()) {
    return ReplanOutcome{absl::StrCat("incremental planning failed: ", plan.status().message()),
                         "",
                         ReplanResult::kFailed,
                         {},
                         {},
                         {}};
  }
  const planner::NetBenefitModel model{config_.horizon_s, config_.transfer_gbps * 1e9 / 8};
  const int last = static_cast<int>(plan->frontier.size()) - 1;
  int target = planner::BestNetBenefitPoint(*plan, model);
  // Forced: go as far as the plan goes, whatever the move costs.
  if (force) target = last;
  const planner::FrontierPoint& from = plan->frontier[0];
  const planner::FrontierPoint& to = plan->frontier[target];
  const double gain =
      from.predicted_step_time > 0 ? 1.0 - to.predicted_step_time / from.predicted_step_time : 0;
  const std::string numbers = absl::StrFormat(
      "frontier point %d of %d (%d moves): modelled gain %s (threshold %s), net benefit %.3f s "
      "over the %.0f s horizon, moves %.2f%% of the slots, at most %s into a GPU, "
      "balancedness %.4f -> %.4f, %d windows",
      target, last, to.num_moves, Percent(gain), Percent(config_.gain_threshold),
      planner::NetBenefits(*plan, model)[target], config_.horizon_s, 100 * to.moved_fraction,
      Bytes(to.max_bytes_into_gpu), from.predicted_balancedness, to.predicted_balancedness,
      trace.num_windows());
  continuation_ = Continuation{committed.layout, *std::move(plan), target, 0, 0, ""};
  if (force && target == 0) {  // nothing to move: a new version of the same layout
    return NextStep("forced push (gate bypassed), nothing moves: ", trace, stages, explain);
  }
  if (!force && (target == 0 || gain <= config_.gain_threshold)) {
    ReplanOutcome gated{
        absl::StrCat("not pushing, ",
                     target == 0 ? "no move pays for itself" : "gain below threshold", ": ",
                     numbers),
        "",
        ReplanResult::kGated,
        {},
        {},
        {}};
    DescribeFrontier(continuation_->plan, model, target, 0, StepLimit(), explain);
    stages->Lap(ReplanStage::kEvaluate);
    continuation_.reset();
    return gated;
  }
  return NextStep(
      absl::StrCat(force ? "forced push (gate bypassed): " : "pushing: ", numbers, "; "), trace,
      stages, explain);
}

ReplanOutcome ReplanLoop::NextStep(const std::string& what, const planner::LoadTrace& trace,
                                   StageTimer* stages, craft::v1::ExplainResponse* explain) {
  Continuation& move = *continuation_;
  const std::optional<int64_t> limit = StepLimit();
  auto fail = [&](std::string why) {
    continuation_.reset();
    return ReplanOutcome{absl::StrCat(what, why), "", ReplanResult::kFailed, {}, {}, {}};
  };
  int next = move.target;
  if (limit.has_value()) {
    absl::StatusOr<int> furthest = planner::FurthestPointWithin(
        *move.base, move.plan, move.reached, move.target, *limit, config_.model.bytes_per_expert);
    if (!furthest.ok()) return fail(std::string(furthest.status().message()));
    if (*furthest == move.reached && move.target > move.reached) {
      return fail(absl::StrCat("the next move brings more than the ", Bytes(*limit),
                               " a GPU can stage (staging headroom)"));
    }
    next = *furthest;
  }
  absl::StatusOr<planner::Layout> layout = planner::LayoutAtPoint(*move.base, move.plan, next);
  if (!layout.ok()) return fail(std::string(layout.status().message()));
  ++move.step;
  const std::string step =
      next == move.target && move.step == 1
          ? "one step"
          : absl::StrCat(
                "step ", move.step, ", to point ", next, " of ", move.target,
                limit.has_value() ? absl::StrCat(" (staging headroom ", Bytes(*limit), ")") : "");
  explain->set_step(move.step);
  const planner::NetBenefitModel model{config_.horizon_s, config_.transfer_gbps * 1e9 / 8};
  DescribeFrontier(move.plan, model, move.target, next, limit, explain);
  const CommittedLayout committed = coordinator_->committed();
  absl::StatusOr<planner::LayoutStats> now = planner::EvaluateLayout(*committed.layout, trace);
  absl::StatusOr<planner::LayoutStats> after = planner::EvaluateLayout(*layout, trace);
  stages->Lap(ReplanStage::kEvaluate);
  ReplanOutcome outcome = Apply(*layout, absl::StrCat(what, step), ReplanResult::kPushed, stages);
  if (now.ok() && after.ok()) {
    outcome.balancedness_before = PerLayerBalancedness(*now);
    outcome.balancedness_after = PerLayerBalancedness(*after);
    explain->set_predicted_balancedness(after->mean_balancedness);
    DescribeLayers(*layout, *now, explain);
  }
  if (outcome.version.empty() || next == move.target) {
    continuation_.reset();  // failed to start, or the last step
  } else {
    move.reached = next;
    move.version = outcome.version;
  }
  return outcome;
}

bool ReplanLoop::Continuing() const { return continuation_.has_value(); }

}  // namespace craft::server
