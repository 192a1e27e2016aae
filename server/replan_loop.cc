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
#include "planner/transfer/stabilize.h"
#include "planner/transfer/transfer_plan.h"

namespace craft::server {
namespace {

// Per-layer benefit curves and choices for Explain.
void DescribePlan(const planner::PlanResult& plan, const planner::LayoutStats& committed,
                  craft::v1::ExplainResponse* explain) {
  for (int l = 0; l < static_cast<int>(plan.replicas_per_layer.size()); ++l) {
    craft::v1::LayerPlan* layer = explain->add_layers();
    layer->set_layer(l);
    if (l < static_cast<int>(plan.curves.size())) {
      const planner::BenefitCurve& curve = plan.curves[l];
      layer->mutable_candidate_replicas()->Add(curve.replicas.begin(), curve.replicas.end());
      layer->mutable_predicted_balancedness()->Add(curve.balancedness.begin(),
                                                   curve.balancedness.end());
    }
    layer->set_chosen_replicas(plan.replicas_per_layer[l]);
    if (l < static_cast<int>(committed.layers.size())) {
      layer->set_measured_balancedness(committed.layers[l].balancedness);
    }
  }
}

std::string Percent(double fraction) { return absl::StrFormat("%.2f%%", 100 * fraction); }

std::vector<double> PerLayerBalancedness(const planner::LayoutStats& stats) {
  std::vector<double> balancedness;
  for (const auto& layer : stats.layers) balancedness.push_back(layer.balancedness);
  return balancedness;
}

constexpr absl::string_view kReplanResultNames[kNumReplanResults] = {"pushed", "gated", "no_loads",
                                                                     "skipped", "failed"};

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
    if (triggered || clock_->Now() >= next_replan) {
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
  ReplanOutcome outcome = Decide(force, &explain);
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
                                ReplanResult result) {
  ReplanOutcome outcome;
  absl::StatusOr<std::string> version = coordinator_->StartApply(layout);
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

ReplanOutcome ReplanLoop::Decide(bool force, craft::v1::ExplainResponse* explain) {
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
  // `measured` carries what was computed so far into every outcome.
  ReplanOutcome measured;
  auto with_measurements = [&measured](ReplanOutcome outcome) {
    outcome.plan_duration = measured.plan_duration;
    outcome.balancedness_before = measured.balancedness_before;
    outcome.balancedness_after = measured.balancedness_after;
    return outcome;
  };
  auto nothing = [&](std::string why, ReplanResult result) {
    return with_measurements(ReplanOutcome{std::move(why), "", result, {}, {}, {}});
  };
  auto push = [&](const planner::Layout& layout, const std::string& what) {
    return with_measurements(Apply(layout, what, ReplanResult::kPushed));
  };

  const planner::LoadTrace trace = load_store_->Trace();
  if (trace.num_windows() == 0) {
    return nothing("no complete load window yet", ReplanResult::kNoLoads);
  }

  const absl::Time plan_start = clock_->Now();
  absl::StatusOr<planner::PlanResult> plan = planner::Plan(trace, config_.plan);
  measured.plan_duration = clock_->Now() - plan_start;
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
  DescribePlan(*plan, *now, explain);
  measured.balancedness_before = PerLayerBalancedness(*now);
  measured.balancedness_after = PerLayerBalancedness(*next);
  explain->set_predicted_balancedness(next->mean_balancedness);

  const double gain = now->step_time > 0 ? 1.0 - next->step_time / now->step_time : 0.0;
  const double transfer_s = static_cast<double>(transfers->max_bytes_received_by_a_gpu) /
                            (config_.transfer_gbps * 1e9 / 8);
  const double benefit_s = config_.horizon_s * gain;
  const std::string numbers = absl::StrFormat(
      "modelled gain %s (threshold %s), benefit %.3f s over the %.0f s horizon vs transfer "
      "%.3f s, balancedness %.4f -> %.4f, %d windows",
      Percent(gain), Percent(config_.gain_threshold), benefit_s, config_.horizon_s, transfer_s,
      now->mean_balancedness, next->mean_balancedness, trace.num_windows());
  if (force) return push(*stable, absl::StrCat("forced push (gate bypassed): ", numbers));
  if (gain > config_.gain_threshold && benefit_s > transfer_s) {
    return push(*stable, absl::StrCat("pushing: ", numbers));
  }
  const std::string why =
      gain <= config_.gain_threshold ? "gain below threshold" : "benefit below transfer cost";
  return nothing(absl::StrCat("not pushing, ", why, ": ", numbers), ReplanResult::kGated);
}

}  // namespace craft::server
