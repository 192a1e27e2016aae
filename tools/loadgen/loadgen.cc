#include "tools/loadgen/loadgen.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "craft/v1/agent.grpc.pb.h"
#include "craft/v1/placement.grpc.pb.h"
#include "planner/initial_layout.h"
#include "tools/loadgen/fake_agent.h"
#include "tools/loadgen/slot_loads.h"
#include "tools/loadgen/timer_queue.h"
#include "wire/version.h"

namespace craft::loadgen {
namespace {

using AgentList = std::vector<std::unique_ptr<FakeAgent>>;

// One placement group's simulated side. Versions are per group ("1.1" in
// every group), so each has its own slot-load cache and apply recorder.
struct GroupRig {
  std::string name;  // "" with one group: the planner's only group
  std::unique_ptr<SlotLoadCache> slot_loads;
  std::unique_ptr<ApplyRecorder> recorder;
  FakeAgentEnv env;
};
using GroupRigs = std::vector<std::unique_ptr<GroupRig>>;

// The name the planner's config gives group `g` of `groups`
// (run_benchmark.sh writes the same).
std::string GroupName(int g, int groups) { return groups == 1 ? "" : absl::StrCat("g", g); }

ApplySummary SummarizeApplies(const GroupRigs& rigs) {
  ApplySummary summary;
  for (const auto& rig : rigs) summary.Add(rig->recorder->Summarize());
  return summary;
}

bool AnyApplyInProgress(const GroupRigs& rigs) {
  for (const auto& rig : rigs) {
    if (rig->recorder->InProgress()) return true;
  }
  return false;
}

// A Replanner per group, re-planning concurrently.
class Replanners {
 public:
  Replanners(craft::v1::PlacementService::Stub* placement, const GroupRigs& rigs,
             const ReplannerOptions& options) {
    for (const auto& rig : rigs) {
      ReplannerOptions own = options;
      own.group = rig->name;
      replanners_.push_back(std::make_unique<Replanner>(placement, own));
    }
    for (const auto& replanner : replanners_) replanner->Start();
  }
  ReplanStats Stop() {
    ReplanStats stats;
    for (const auto& replanner : replanners_) {
      replanner->Stop();
      stats.Add(replanner->stats());
    }
    return stats;
  }

 private:
  std::vector<std::unique_ptr<Replanner>> replanners_;
};

double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  int threads = 0;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0 && absl::SimpleAtoi(line.substr(8), &threads)) break;
  }
  return threads;
}

std::shared_ptr<grpc::Channel> NewChannel(const LoadgenOptions& options) {
  grpc::ChannelArguments args;
  // A TCP connection of its own: channels with equal arguments share one.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return MakeChannel(options.planner, options.security, options.planner_name, args);
}

// Over every group.
absl::StatusOr<int64_t> WindowsIngested(craft::v1::PlacementService::Stub* placement,
                                        const GroupRigs& rigs) {
  int64_t ingested = 0;
  for (const auto& rig : rigs) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    craft::v1::GetLayoutRequest request;
    request.set_group(rig->name);
    craft::v1::LayoutStatus status;
    const grpc::Status rpc = placement->GetLayout(&context, request, &status);
    if (!rpc.ok()) {
      return absl::UnavailableError(absl::StrCat("GetLayout failed: ", rpc.error_message()));
    }
    ingested += status.windows_ingested();
  }
  return ingested;
}

int64_t GpuWindowsSent(const AgentList& agents) {
  int64_t sent = 0;
  for (const auto& agent : agents) sent += agent->counters().gpu_windows_sent;
  return sent;
}

absl::Status AwaitWelcomes(const AgentList& agents, absl::Duration timeout,
                           std::ostream& progress) {
  const absl::Time start = absl::Now();
  int welcomed = 0;
  while (true) {
    welcomed = 0;
    for (const auto& agent : agents) welcomed += agent->welcomed() ? 1 : 0;
    if (welcomed == static_cast<int>(agents.size())) break;
    if (absl::Now() - start > timeout) {
      return absl::FailedPreconditionError(absl::StrCat("only ", welcomed, " of ", agents.size(),
                                                        " agents were welcomed within ",
                                                        absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  progress << "connected " << welcomed << " agents in "
           << absl::StrFormat("%.2f s", absl::ToDoubleSeconds(absl::Now() - start)) << std::endl;
  return absl::OkStatus();
}

// Sends window W to every agent when it ends, at (W + 1) x window_ms, until
// `until`. Returns how late the slowest window's last NodeLoad was queued.
absl::Duration SendWindowsUntil(const AgentList& agents, int window_ms, absl::Time until) {
  int64_t boundary = absl::ToUnixMillis(absl::Now()) / window_ms + 1;
  absl::Duration max_lag;
  while (true) {
    const absl::Time end_of_window = absl::FromUnixMillis(boundary * window_ms);
    if (end_of_window > until) return max_lag;
    absl::SleepFor(end_of_window - absl::Now());
    for (const auto& agent : agents) agent->SendWindow(boundary - 1);
    max_lag = std::max(max_lag, absl::Now() - end_of_window);
    ++boundary;
  }
}

// Waits up to `timeout` for every agent's writes to complete.
void AwaitWritten(const AgentList& agents, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  auto all_idle = [&agents] {
    for (const auto& agent : agents) {
      if (!agent->idle()) return false;
    }
    return true;
  };
  while (!all_idle() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
}

// Before measuring, one apply per group: the first takes a group from the
// initial layout to a CRAFT layout and moves nearly every slot, once; the
// measured phase is about the re-plans that follow it. Windows flow
// meanwhile (the planner plans from them), and Replan RPCs repeat until
// every group committed an apply.
absl::Status WarmUp(const LoadgenOptions& options, const AgentList& agents,
                    craft::v1::PlacementService::Stub* placement, const GroupRigs& rigs,
                    std::ostream& progress) {
  progress << "warm-up: until the first apply commits" << std::endl;
  const absl::Time start = absl::Now();
  const absl::Duration window = absl::Milliseconds(options.window_ms);
  Replanners replanners(placement, rigs,
                        ReplannerOptions{std::max(options.replan_every, 3 * window),
                                         options.replan_force, options.admin_token});
  auto every_group_committed = [&rigs] {
    for (const auto& rig : rigs) {
      if (rig->recorder->Summarize().committed == 0) return false;
    }
    return true;
  };
  while (!every_group_committed() || AnyApplyInProgress(rigs)) {
    if (absl::Now() - start > options.warmup_timeout) {
      return absl::DeadlineExceededError(
          absl::StrCat("no apply committed within the warm-up's ",
                       absl::FormatDuration(options.warmup_timeout)));
    }
    SendWindowsUntil(agents, options.window_ms, absl::Now() + window);
  }
  replanners.Stop();
  progress << "warm-up: done in "
           << absl::StrFormat("%.1f s", absl::ToDoubleSeconds(absl::Now() - start)) << std::endl;
  return absl::OkStatus();
}

// The measured phase: windows (and Replan RPCs) for options.duration.
absl::Status Measure(const LoadgenOptions& options, const AgentList& agents,
                     craft::v1::PlacementService::Stub* placement, const GroupRigs& rigs,
                     std::ostream& progress, LoadgenReport* report) {
  CRAFT_ASSIGN_OR_RETURN(const int64_t ingested_before, WindowsIngested(placement, rigs));
  const int64_t sent_before = GpuWindowsSent(agents);
  const double cpu_before = CpuSeconds();
  const absl::Time start = absl::Now();
  progress << "measure: start (" << absl::FormatDuration(options.duration) << ")" << std::endl;

  std::unique_ptr<Replanners> replanners;
  if (options.replan_every > absl::ZeroDuration()) {
    replanners = std::make_unique<Replanners>(
        placement, rigs,
        ReplannerOptions{options.replan_every, options.replan_force, options.admin_token});
  }
  const absl::Time until = start + options.duration;
  report->window_send_lag_ms =
      absl::ToDoubleMilliseconds(SendWindowsUntil(agents, options.window_ms, until));
  AwaitWritten(agents, absl::Milliseconds(options.window_ms));
  absl::SleepFor(until - absl::Now());  // rates over the whole duration, not to the last window
  if (replanners != nullptr) report->replans = replanners->Stop();

  const absl::Time end = absl::Now();
  report->measured_s = absl::ToDoubleSeconds(end - start);
  report->gpu_windows_sent = GpuWindowsSent(agents) - sent_before;
  report->loadgen_cpu_s = CpuSeconds() - cpu_before;
  report->loadgen_threads = ThreadCount();
  CRAFT_ASSIGN_OR_RETURN(const int64_t ingested_after, WindowsIngested(placement, rigs));
  report->planner_windows_ingested = ingested_after - ingested_before;
  progress << "measure: end" << std::endl;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options, std::ostream& progress) {
  if (options.nodes <= 0 || options.gpus_per_node <= 0 || options.window_ms <= 0) {
    return absl::InvalidArgumentError("nodes, gpus_per_node and window_ms must be positive");
  }
  if (options.groups <= 0 || options.nodes % options.groups != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("groups (", options.groups, ") must divide nodes (", options.nodes, ")"));
  }
  // Every group has the same shape: nodes / groups nodes, ranks from 0.
  const int nodes_per_group = options.nodes / options.groups;
  const planner::ClusterShape cluster{nodes_per_group * options.gpus_per_node, nodes_per_group};
  CRAFT_ASSIGN_OR_RETURN(
      const ExpertLoads loads,
      ExpertLoads::Synthesize({options.num_layers, options.num_experts, options.top_k,
                               cluster.num_gpus, options.tokens_per_gpu, options.hot_ratio,
                               options.seed}));
  CRAFT_ASSIGN_OR_RETURN(
      const planner::Layout initial,
      planner::ContiguousLayout(options.num_layers, options.num_experts, cluster));
  std::optional<ExpertLoads> drifted;  // outlives the agents that report it

  craft::v1::ModelShape model;
  model.set_num_layers(options.num_layers);
  model.set_num_experts(options.num_experts);
  model.set_top_k(options.top_k);
  model.set_bytes_per_expert(options.bytes_per_expert);

  TimerQueue timers;
  absl::BlockingCounter streams_done(options.nodes);
  GroupRigs rigs;
  for (int g = 0; g < options.groups; ++g) {
    auto rig = std::make_unique<GroupRig>();
    rig->name = GroupName(g, options.groups);
    rig->slot_loads = std::make_unique<SlotLoadCache>(&loads);
    CRAFT_ASSIGN_OR_RETURN(std::shared_ptr<const SlotLoads> initial_slots,
                           rig->slot_loads->Get(kInitialVersion, initial));
    rig->recorder = std::make_unique<ApplyRecorder>(nodes_per_group);
    rig->env = FakeAgentEnv{rig->slot_loads.get(), rig->recorder.get(), &timers, &streams_done,
                            initial_slots};
    rigs.push_back(std::move(rig));
  }

  const int connections =
      options.connections > 0 ? std::min(options.connections, options.nodes) : options.nodes;
  std::vector<std::unique_ptr<craft::v1::AgentGateway::Stub>> stubs;
  for (int c = 0; c < connections; ++c) {
    stubs.push_back(craft::v1::AgentGateway::NewStub(NewChannel(options)));
  }
  progress << "starting " << options.nodes << " agents x " << options.gpus_per_node << " GPUs in "
           << options.groups << " group(s) of " << cluster.num_gpus << " GPUs ("
           << options.num_layers << " x " << options.num_experts << " top-" << options.top_k
           << ") on " << connections << " connections to " << options.planner << std::endl;
  AgentList agents;
  for (int n = 0; n < options.nodes; ++n) {
    const GroupRig& rig = *rigs[n / nodes_per_group];
    const int local = n % nodes_per_group;
    FakeAgentOptions agent;
    agent.node = absl::StrCat("loadgen-node", n);
    agent.group = rig.name;
    for (int i = 0; i < options.gpus_per_node; ++i) {
      agent.gpus.push_back(local * options.gpus_per_node + i);
    }
    agent.model = model;
    agent.window_ms = options.window_ms;
    agent.jitter = options.jitter;
    agent.stage_delay = options.stage_delay;
    agent.seed = options.seed * 1'000'003 + n;
    agents.push_back(std::make_unique<FakeAgent>(std::move(agent), rig.env));
  }
  for (int n = 0; n < options.nodes; ++n) agents[n]->Start(stubs[n % connections].get());

  auto placement = craft::v1::PlacementService::NewStub(NewChannel(options));
  LoadgenReport report;
  report.options = options;
  const absl::Time connect_start = absl::Now();
  absl::Status status = AwaitWelcomes(agents, options.connect_timeout, progress);
  report.connect_s = absl::ToDoubleSeconds(absl::Now() - connect_start);
  if (status.ok() && options.warmup_apply && options.replan_every > absl::ZeroDuration()) {
    status = WarmUp(options, agents, placement.get(), rigs, progress);
    report.warmup = SummarizeApplies(rigs);
    for (const auto& rig : rigs) rig->recorder->ForgetFinished();
    if (status.ok() && options.drift) {
      absl::StatusOr<ExpertLoads> next = ExpertLoads::Synthesize(
          {options.num_layers, options.num_experts, options.top_k, cluster.num_gpus,
           options.tokens_per_gpu, options.hot_ratio, options.seed + 1});
      if (next.ok()) {
        drifted = *std::move(next);
        for (const auto& rig : rigs) rig->slot_loads->SetLoads(&*drifted);
        progress << "the traffic drifts: other experts are hot" << std::endl;
      } else {
        status = next.status();
      }
    }
  }
  if (status.ok()) status = Measure(options, agents, placement.get(), rigs, progress, &report);
  if (status.ok()) {
    const absl::Time deadline = absl::Now() + options.drain;
    while (AnyApplyInProgress(rigs) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // Streams that ended on their own failed; then close the rest.
  std::vector<bool> failed(agents.size());
  for (size_t n = 0; n < agents.size(); ++n) failed[n] = agents[n]->closed();
  for (const auto& agent : agents) agent->Cancel();
  streams_done.Wait();
  timers.Stop();
  if (!status.ok()) return status;

  for (size_t n = 0; n < agents.size(); ++n) {
    const FakeAgentCounters counters = agents[n]->counters();
    report.loads_dropped += counters.loads_dropped;
    report.bad_layouts += counters.bad_layouts;
    if (failed[n] && report.agents_failed++ == 0) {
      report.first_failure = absl::StrCat("agent ", n, ": ", agents[n]->status().error_message());
    }
  }
  report.applies = SummarizeApplies(rigs);
  return report;
}

void PrintReport(const LoadgenReport& report, std::ostream& out) {
  const LoadgenOptions& o = report.options;
  const double seconds = report.measured_s > 0 ? report.measured_s : 1;
  auto line = [&out](const std::string& key, const auto& value) {
    out << key << "=" << value << "\n";
  };
  auto number = [&line](const std::string& key, double value) {
    line(key, absl::StrFormat("%.2f", value));
  };
  line("agents", o.nodes);
  line("groups", o.groups);
  line("gpus", o.nodes * o.gpus_per_node);
  line("window_ms", o.window_ms);
  number("connect_s", report.connect_s);
  number("measured_s", report.measured_s);
  number("expected_gpu_windows_per_s", 1000.0 * o.nodes * o.gpus_per_node / o.window_ms);
  line("gpu_windows_sent", report.gpu_windows_sent);
  number("gpu_windows_sent_per_s", report.gpu_windows_sent / seconds);
  line("planner_windows_ingested", report.planner_windows_ingested);
  number("planner_windows_ingested_per_s", report.planner_windows_ingested / seconds);
  line("node_loads_dropped", report.loads_dropped);
  number("window_send_lag_ms_max", report.window_send_lag_ms);
  line("agents_failed", report.agents_failed);
  if (!report.first_failure.empty()) line("first_failure", report.first_failure);
  line("bad_layouts", report.bad_layouts);
  const ApplySummary& w = report.warmup;
  if (w.prepared > 0) {
    line("warmup_applies_committed", w.committed);
    number("warmup_prepare_to_commit_ms", Percentile(w.prepare_to_commit_ms, 1.0));
    line("warmup_max_prepare_bytes", w.max_prepare_bytes);
  }
  const ApplySummary& a = report.applies;
  line("max_prepare_bytes", a.max_prepare_bytes);
  line("applies_prepared", a.prepared);
  line("applies_committed", a.committed);
  line("applies_aborted", a.aborted);
  line("applies_unfinished", a.unfinished);
  number("prepare_to_commit_ms_p50", Percentile(a.prepare_to_commit_ms, 0.50));
  number("prepare_to_commit_ms_p99", Percentile(a.prepare_to_commit_ms, 0.99));
  number("prepare_to_commit_ms_max", Percentile(a.prepare_to_commit_ms, 1.0));
  number("prepare_fanout_ms_p50", Percentile(a.prepare_fanout_ms, 0.50));
  number("prepare_fanout_ms_max", Percentile(a.prepare_fanout_ms, 1.0));
  number("commit_fanout_ms_p50", Percentile(a.commit_fanout_ms, 0.50));
  number("commit_fanout_ms_max", Percentile(a.commit_fanout_ms, 1.0));
  const ReplanStats& r = report.replans;
  line("replan_rpcs", r.calls);
  line("replan_rpcs_failed", r.failed);
  line("replan_rpcs_applying", r.applies);
  number("replan_rpc_ms_p50", Percentile(r.ms, 0.50));
  number("replan_rpc_ms_p99", Percentile(r.ms, 0.99));
  number("replan_rpc_ms_max", Percentile(r.ms, 1.0));
  for (const StageSamples& stage : r.stages) {
    number(absl::StrCat("replan_stage_", stage.stage, "_ms_p50"), Percentile(stage.ms, 0.50));
    number(absl::StrCat("replan_stage_", stage.stage, "_ms_max"), Percentile(stage.ms, 1.0));
  }
  if (!r.last_error.empty()) line("replan_last_error", r.last_error);
  if (!r.last_decision.empty()) line("replan_last_decision", r.last_decision);
  number("loadgen_cpu_s_per_s", report.loadgen_cpu_s / seconds);
  line("loadgen_threads", report.loadgen_threads);
  out.flush();
}

}  // namespace craft::loadgen
