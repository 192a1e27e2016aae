// Crash-consistency trials (docs/design.md §5, "State and invariants under
// faults"): after a crash of the planner, an agent or a worker at any step of
// prepare, commit or flip, every worker converges to the planner's committed
// version within seconds, and the next apply commits.
//
// One long-lived cluster runs N seeded trials. Each arms one crash point of
// one process (common/crash_point.h), forces a replan, waits for the process
// to SIGKILL itself, restarts it as it was, then checks
//   (a) convergence: within kConvergeWait every worker serves the committed
//       version, with no replan from the test (the cluster must heal itself);
//   (b) not wedged: a forced replan commits a new version that every worker
//       then serves.
// A table of every trial and a summary line are printed at the end.
//
// Environment (pass with --test_env): CRAFT_CRASH_TRIALS (default 9: three of
// each kind of process) and CRAFT_CRASH_SEED (default 1; trial i uses seed
// CRAFT_CRASH_SEED + i). crash_trials.sh runs many trials.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/local_cluster/local_cluster.h"

namespace craft::testing {

using ::craft::local_cluster::ClusterOptions;
using ::craft::local_cluster::LocalCluster;
using ::craft::local_cluster::Process;
using ::craft::local_cluster::ProcessName;
using ::craft::local_cluster::Role;
using ::craft::local_cluster::WaitFor;
namespace {

// A crash point that is not reached by then was not on this apply's path
// (e.g. an agent whose workers had nothing to do still forwards, but a
// planner that aborted never commits).
constexpr absl::Duration kDeathWait = absl::Seconds(4);
// docs/design.md §5: "every rank converges to the committed version within seconds".
constexpr absl::Duration kConvergeWait = absl::Seconds(10);
// A forced replan is skipped while an apply is pending (up to the apply
// timeout) and before the (restarted) planner has a complete load window.
constexpr absl::Duration kNextApplyWait = absl::Seconds(15);
// Workers flip at their next window boundary after the commit.
constexpr absl::Duration kServeWait = absl::Seconds(10);

// Small and fast: 2 nodes x 2 CPU workers, a tiny model, short applies. The
// apply timeout bounds how long a crash mid-apply can keep the next replan
// waiting; it stays well above a window (a commit takes up to one).
ClusterOptions TrialClusterOptions() {
  ClusterOptions options;
  options.num_nodes = 2;
  options.gpus_per_node = 2;
  options.num_layers = 2;
  options.num_experts = 16;
  options.top_k = 2;
  options.window_ms = 200;
  options.tokens_per_window = 1024;
  options.apply_timeout_ms = 4000;
  return options;
}

// Each role's crash points, the nastiest first: the first trial of each kind
// takes it, so even a short run covers the crashes most likely to split.
const std::vector<std::string>& CrashPointsOf(Role role) {
  static const auto* const planner = new std::vector<std::string>{
      "planner.commit_persisted", "planner.prepare_sent", "planner.commit_sent"};
  static const auto* const agent =
      new std::vector<std::string>{"agent.commit_forwarded", "agent.prepare_forwarded",
                                   "agent.prepared_acked", "agent.commit_persisted"};
  static const auto* const worker =
      new std::vector<std::string>{"worker.commit_received", "worker.staged", "worker.flipped"};
  switch (role) {
    case Role::kPlanner:
      return *planner;
    case Role::kAgent:
      return *agent;
    case Role::kWorker:
      return *worker;
  }
  return *planner;
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  int64_t value = 0;
  return text != nullptr && absl::SimpleAtoi(text, &value) ? value : fallback;
}

struct Trial {
  uint64_t seed = 0;
  Role role = Role::kPlanner;
  int index = 0;  // node or GPU
  std::string point;
  int delay_ms = 0;
};

// Trial `number` from its seed. Roles rotate (planner, agent, worker) so every
// run of 3 trials covers each kind; the rest comes from the seed alone, so a
// row of the table can be replayed with CRAFT_CRASH_SEED=<seed> and
// CRAFT_CRASH_TRIALS=1 (modulo the rotation: the first trial is a planner's).
Trial PickTrial(int number, uint64_t seed, const ClusterOptions& options) {
  static constexpr Role kRoles[] = {Role::kPlanner, Role::kAgent, Role::kWorker};
  std::mt19937_64 rng(seed);  // its output is fixed by the standard
  Trial trial;
  trial.seed = seed;
  trial.role = kRoles[number % 3];
  const std::vector<std::string>& points = CrashPointsOf(trial.role);
  const std::string& random_point = points[rng() % points.size()];
  trial.point = number < 3 ? points.front() : random_point;
  const int num_gpus = options.num_nodes * options.gpus_per_node;
  const uint64_t index_draw = rng();
  if (trial.role == Role::kAgent) trial.index = static_cast<int>(index_draw % options.num_nodes);
  if (trial.role == Role::kWorker) trial.index = static_cast<int>(index_draw % num_gpus);
  trial.delay_ms = static_cast<int>(rng() % 61);
  return trial;
}

struct Outcome {
  bool died = false;
  bool converged = false;
  double converge_s = -1;
  bool next_committed = false;  // the follow-up replan committed a new version
  bool next_served = false;     // ... and every worker serves it
  double trial_s = 0;
  std::string notes;  // what was seen when something went wrong
  bool split() const { return !converged; }
  bool wedged() const { return !next_committed || !next_served; }
};

void AddNote(Outcome& outcome, absl::string_view note) {
  absl::StrAppend(&outcome.notes, outcome.notes.empty() ? "" : "; ", note);
}

// "planner 1.3 pending 1.4 | node0 1.2 node1 1.3 | workers 1.2,1.2,1.3,1.3":
// what each party thinks, for the notes of a failed check.
std::string Snapshot(LocalCluster& cluster) {
  std::string text = "planner ";
  auto layout = cluster.GetLayout();
  if (layout.ok()) {
    absl::StrAppend(&text, layout->committed().version());
    if (!layout->pending_version().empty()) {
      absl::StrAppend(&text, " pending ", layout->pending_version());
    }
  } else {
    absl::StrAppend(&text, "unreachable");
  }
  absl::StrAppend(&text, " | ");
  if (auto agents = cluster.ListAgents(); agents.ok()) {
    for (const auto& agent : agents->agents()) {
      absl::StrAppend(&text, agent.node(), " ", agent.committed_version(),
                      agent.connected() ? "" : " (gone)", " ");
    }
  }
  std::vector<std::string> versions = cluster.WorkerServingVersions();
  for (std::string& version : versions) {
    if (version.empty()) version = "?";
  }
  absl::StrAppend(&text, "| workers ", absl::StrJoin(versions, ","));
  return text;
}

// True when every worker serves `version`.
bool AllServe(LocalCluster& cluster, const std::string& version) {
  for (const std::string& serving : cluster.WorkerServingVersions()) {
    if (serving != version) return false;
  }
  return true;
}

// True when every worker serves the planner's committed version right now.
bool Converged(LocalCluster& cluster) {
  auto layout = cluster.GetLayout();
  return layout.ok() && AllServe(cluster, layout->committed().version());
}

// Forces replans until one starts an apply; returns its version, or "" when
// none started by `deadline` or `stop` became true. A replan is skipped while
// an apply is pending, while an agent is away, or before a load window.
// `decision` (optional) gets the planner's last reason, for the notes.
std::string StartApply(LocalCluster& cluster, absl::Time deadline,
                       const std::function<bool()>& stop, std::string* decision = nullptr) {
  while (absl::Now() < deadline && !stop()) {
    auto replan = cluster.Replan(/*force=*/true);
    if (replan.ok() && !replan->version().empty()) return replan->version();
    if (decision != nullptr) {
      *decision = replan.ok() ? replan->decision() : replan.status().ToString();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return "";
}

// The apply of `version` finished (nothing pending, or something newer);
// true when `version` is what the planner committed.
bool WaitForApplyToFinish(LocalCluster& cluster, const std::string& version,
                          absl::Duration timeout) {
  std::string committed;
  WaitFor(
      [&] {
        auto layout = cluster.GetLayout();
        if (!layout.ok()) return false;
        committed = layout->committed().version();
        return layout->pending_version() != version;
      },
      timeout);
  return committed == version;
}

// Check (b): a forced replan commits a version newer than the one before and
// every worker then serves it.
void CheckNextApply(LocalCluster& cluster, Outcome& outcome) {
  auto before = cluster.GetLayout();
  const std::string old_version = before.ok() ? before->committed().version() : "";
  const absl::Time deadline = absl::Now() + kNextApplyWait;
  std::string version;
  std::string decision;
  while (absl::Now() < deadline && !outcome.next_committed) {
    version = StartApply(
        cluster, deadline, [] { return false; }, &decision);
    if (version.empty()) break;
    outcome.next_committed =
        version != old_version && WaitForApplyToFinish(cluster, version, deadline - absl::Now());
  }
  if (!outcome.next_committed) {
    // The planner's reason, past the modelled numbers that lead a forced one.
    const size_t why = decision.find("; ");
    AddNote(outcome,
            absl::StrCat("next apply did not commit (",
                         why == std::string::npos ? decision : decision.substr(why + 2), ")"));
    return;
  }
  outcome.next_served = WaitFor([&] { return AllServe(cluster, version); }, kServeWait);
  if (!outcome.next_served) {
    AddNote(outcome, absl::StrCat("next apply ", version, " not served everywhere (",
                                  Snapshot(cluster), ")"));
  }
}

// Restarts every process other than the target that died too: a crash of one
// process must not take another with it, and the next trial needs them all.
void RestartCollateral(LocalCluster& cluster, const Trial& trial, Outcome& outcome) {
  std::vector<std::pair<Role, int>> all = {{Role::kPlanner, 0}};
  for (int node = 0; node < cluster.options().num_nodes; ++node)
    all.push_back({Role::kAgent, node});
  for (int gpu = 0; gpu < cluster.num_gpus(); ++gpu) all.push_back({Role::kWorker, gpu});
  for (const auto& [role, index] : all) {
    if (cluster.Running(role, index)) continue;
    if (role == trial.role && index == trial.index) continue;
    AddNote(outcome, absl::StrCat(ProcessName(role, index), " died too; restarted"));
    (void)cluster.DisarmCrashPoint(role, index);
    if (absl::Status s = cluster.Restart(role, index); !s.ok()) AddNote(outcome, s.ToString());
  }
}

Outcome RunTrial(LocalCluster& cluster, const Trial& trial) {
  const absl::Time start = absl::Now();
  Outcome outcome;
  auto target_dead = [&] { return !cluster.Running(trial.role, trial.index); };
  if (absl::Status s =
          cluster.ArmCrashPoint(trial.role, trial.index, trial.point, /*hit=*/1, trial.delay_ms);
      !s.ok()) {
    AddNote(outcome, s.ToString());
  }
  if (StartApply(cluster, absl::Now() + kNextApplyWait, target_dead).empty() && !target_dead()) {
    AddNote(outcome, "no apply started");
  }
  outcome.died = WaitFor(target_dead, kDeathWait);
  Process* target = cluster.process(trial.role, trial.index);
  if (!outcome.died) {
    // Never reached on this apply: disarm so it cannot fire in a later step.
    (void)cluster.DisarmCrashPoint(trial.role, trial.index);
    AddNote(outcome, "point not reached");
  } else if (target->Log().find(absl::StrCat("crash point ", trial.point, " reached")) ==
             std::string::npos) {
    AddNote(outcome, "died without reaching the point");
  }
  if (outcome.died) {
    if (absl::Status s = cluster.Restart(trial.role, trial.index); !s.ok()) {
      AddNote(outcome, absl::StrCat("restart failed: ", s.ToString()));
    }
  }
  RestartCollateral(cluster, trial, outcome);

  // (a) Convergence, timed from the restart, with no help from the test.
  const absl::Time restarted = absl::Now();
  outcome.converged = WaitFor([&] { return Converged(cluster); }, kConvergeWait);
  if (outcome.converged) {
    outcome.converge_s = absl::ToDoubleSeconds(absl::Now() - restarted);
  } else {
    AddNote(outcome, absl::StrCat("split after ", absl::FormatDuration(kConvergeWait), " (",
                                  Snapshot(cluster), ")"));
  }
  // (b) Not wedged.
  CheckNextApply(cluster, outcome);
  outcome.trial_s = absl::ToDoubleSeconds(absl::Now() - start);
  return outcome;
}

// Starts the cluster and proves it healthy before any crash: every agent
// connected, load windows measured, and one forced apply committed and served
// everywhere (so trials start from a version other than the initial one,
// which a restarted worker serves).
std::unique_ptr<LocalCluster> StartHealthyCluster() {
  auto cluster = std::make_unique<LocalCluster>(TrialClusterOptions());
  if (absl::Status s = cluster->Start(); !s.ok()) {
    ADD_FAILURE() << "cluster start: " << s;
    return nullptr;
  }
  if (!cluster->WaitForAgentsConnected(absl::Seconds(30)) ||
      !cluster->WaitForMeasuredBalance(absl::Seconds(30)).ok()) {
    ADD_FAILURE() << "cluster not up: " << Snapshot(*cluster);
    return nullptr;
  }
  Outcome first;
  CheckNextApply(*cluster, first);
  if (first.wedged()) {
    ADD_FAILURE() << "first apply: " << first.notes;
    return nullptr;
  }
  return cluster;
}

// After a failed trial the cluster is in a state the code under test could
// not leave (the trial already waited for convergence and forced replans): a
// fresh cluster keeps later trials independent of this one.
std::unique_ptr<LocalCluster> Rebuild(std::unique_ptr<LocalCluster> cluster, Outcome& outcome) {
  AddNote(outcome, "cluster rebuilt");
  cluster.reset();  // stop every process before the new cluster starts
  return StartHealthyCluster();
}

std::string YesNo(bool value) { return value ? "yes" : "no"; }

std::string Row(int number, const Trial& trial, const Outcome& outcome) {
  return absl::StrFormat("%3d %6d %-8s %-26s %5d %-4s %-4s %6s %-4s %-4s %6.1f  %s", number,
                         trial.seed, ProcessName(trial.role, trial.index), trial.point,
                         trial.delay_ms, YesNo(outcome.died), YesNo(outcome.converged),
                         outcome.converged ? absl::StrFormat("%.2f", outcome.converge_s) : "-",
                         YesNo(outcome.next_committed), YesNo(outcome.next_served), outcome.trial_s,
                         outcome.notes);
}

constexpr char kHeader[] =
    "  # seed   process  point                      delay died conv conv_s next "
    "serv trial_s notes";

TEST(CrashTest, EveryCrashConvergesAndTheNextApplyCommits) {
  const int trials = static_cast<int>(EnvInt("CRAFT_CRASH_TRIALS", 9));
  const uint64_t base_seed = static_cast<uint64_t>(EnvInt("CRAFT_CRASH_SEED", 1));
  std::unique_ptr<LocalCluster> cluster = StartHealthyCluster();
  ASSERT_NE(cluster, nullptr);

  std::vector<std::string> rows;
  int died = 0, split = 0, wedged = 0;
  double converge_total_s = 0, trial_total_s = 0;
  absl::PrintF("%s\n", kHeader);
  for (int i = 0; i < trials && cluster != nullptr; ++i) {
    const Trial trial = PickTrial(i, base_seed + i, cluster->options());
    Outcome outcome = RunTrial(*cluster, trial);
    if (outcome.split() || outcome.wedged()) cluster = Rebuild(std::move(cluster), outcome);
    died += outcome.died ? 1 : 0;
    split += outcome.split() ? 1 : 0;
    wedged += outcome.wedged() ? 1 : 0;
    if (outcome.converged) converge_total_s += outcome.converge_s;
    trial_total_s += outcome.trial_s;
    rows.push_back(Row(i, trial, outcome));
    absl::PrintF("%s\n", rows.back());  // as it goes: a long run shows progress
    std::fflush(stdout);
  }
  ASSERT_NE(cluster, nullptr) << "could not rebuild the cluster";

  // The whole table again in one piece, between markers crash_trials.sh cuts on.
  absl::PrintF("=== crash trials: table\n%s\n%s\n", kHeader, absl::StrJoin(rows, "\n"));
  const int converged = trials - split;
  absl::PrintF(
      "=== crash trials: summary: %d trials (seed %d), %d died at their point, %d split, %d "
      "wedged, mean convergence %.2f s, mean trial %.1f s\n",
      trials, base_seed, died, split, wedged, converged > 0 ? converge_total_s / converged : 0.0,
      trials > 0 ? trial_total_s / trials : 0.0);
  std::fflush(stdout);
  EXPECT_EQ(split, 0) << "trials whose workers did not converge to the committed version";
  EXPECT_EQ(wedged, 0) << "trials after which the next apply did not commit everywhere";
}

}  // namespace
}  // namespace craft::testing
