// The planner service's configuration: one YAML file (deploy/planner.yaml is
// the annotated example), parsed by a pure function so that every error case
// is unit-testable without files.
//
//   absl::StatusOr<PlannerConfig> config = ParseConfig(yaml_text, "planner.yaml");
//   // errors read "planner.yaml:12:3: replan.budget: expected a non-negative
//   // integer or 'auto', got 'lots'"
//
// Unknown keys, duplicate keys, values of the wrong type or out of range and
// inconsistent combinations are all rejected with file, line, column and
// reason (INVALID_ARGUMENT); nothing is silently defaulted except keys that
// are absent.
#ifndef CRAFT_SERVER_CONFIG_H_
#define CRAFT_SERVER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "planner/cluster.h"
#include "planner/plan_types.h"

namespace craft::server {

// The MoE shape every agent must report in its AgentHello.
struct ModelShape {
  int num_layers = 0;
  int num_experts = 0;
  int top_k = 0;
  int64_t bytes_per_expert = 0;
};

// Who may do what (server/authorizer.h). Identities are the DNS names in the
// peers' certificates (mutual TLS, common/transport_security.h).
struct SecurityConfig {
  // Node names by node index: the agent of node i must name itself nodes[i]
  // in its hello, its certificate must carry that name, and it may claim only
  // node i's GPU ranks. Required with TLS; optional (but enforced when given)
  // with --insecure.
  std::vector<std::string> nodes;
  // Certificate names with the admin role (Replan) and with the read role
  // (GetLayout, WatchLayout, ListAgents, Explain, Plan). "*" in readers: any
  // certificate the cluster's CA signed. Admins can read.
  std::vector<std::string> admins;
  std::vector<std::string> readers = {"*"};
  // A file holding a bearer token ("authorization: Bearer <token>") that
  // grants the admin role; read at start. Empty: no token.
  std::string admin_token_file;
};

// How the replan loop builds the next layout.
enum class ReplanMethod {
  // From the committed layout, the moves that pay most per replica moved
  // (planner/transfer/incremental.h); the loop picks the frontier point with
  // the best net benefit and applies it in steps that fit the workers'
  // staging headroom.
  kIncremental,
  // A fresh plan by `plan.algorithm`, stabilised against the committed one.
  kFresh,
};
// Inline: config.h is the header-only :config_types target.
inline absl::StatusOr<ReplanMethod> ParseReplanMethod(absl::string_view name) {
  if (name == "incremental") return ReplanMethod::kIncremental;
  if (name == "fresh") return ReplanMethod::kFresh;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown re-planning method '", name, "' (incremental or fresh)"));
}
inline absl::string_view ReplanMethodName(ReplanMethod method) {
  return method == ReplanMethod::kIncremental ? "incremental" : "fresh";
}

// High availability (proto/README.md, "High availability"): planners elect a
// leader on an etcd lease and keep the committed state in etcd. Off while
// `etcd_endpoints` is empty (one planner, the state file).
struct HaConfig {
  std::vector<std::string> etcd_endpoints;  // host:port of each etcd member
  // craft's keys live under it (<prefix>/leader, /epoch, /state): one
  // prefix per craft cluster sharing an etcd.
  std::string prefix = "/craft/default";
  // The leader's lease; a dead leader is replaced within about this long.
  absl::Duration lease_ttl = absl::Seconds(5);
  absl::Duration etcd_timeout = absl::Seconds(2);  // per etcd request
  // Mutual TLS with etcd (its client port), unless etcd_insecure.
  bool etcd_insecure = false;
  std::string etcd_cert_file, etcd_key_file, etcd_ca_file;
  std::string etcd_server_name;  // "" checks each endpoint's host

  bool enabled() const { return !etcd_endpoints.empty(); }
};

struct PlacementGroup;

struct PlannerConfig {
  // host:port for every gRPC service; port 0 picks a free port.
  std::string listen_address = "0.0.0.0:50051";
  // Where committed layout, version counter and epoch persist. Empty here
  // means "not configured"; the binary then requires --state_path.
  std::string state_path;
  SecurityConfig security;
  HaConfig ha;

  ModelShape model;
  planner::ClusterShape cluster;

  // Load store: the most recent `window_horizon` windows are kept; the
  // planning aggregate weighs a window `age` windows old by decay^age.
  int window_horizon = 64;
  std::optional<double> decay;
  // A window must start within this much of the planner's clock (workers'
  // window ids are wall-clock aligned); zero takes windows of any time.
  absl::Duration max_clock_skew = absl::Seconds(60);

  // Replan loop.
  absl::Duration replan_interval = absl::Seconds(30);
  // Algorithm, budget (unset = auto), candidates, no_duplicates and the memory
  // model; `plan.cluster` equals `cluster`. replan.objective: roofline with
  // replan.roofline {calibration: FILE, tokens_per_gpu: N} sets plan.roofline
  // (top-k from model.top_k), and the gate then weighs modelled ms.
  planner::PlanOptions plan;
  double gain_threshold = 0.05;  // minimum relative modelled step-time gain
  double horizon_s = 600;        // how long a gain is assumed to last
  double transfer_gbps = 100;    // per-GPU receive bandwidth for the transfer cost
  ReplanMethod replan_method = ReplanMethod::kIncremental;
  // Incremental: at most this fraction of the new layout's slots move in one
  // re-plan (over all its steps).
  double max_moved_fraction = 1.0;
  // Incremental: at most this many bytes arrive at one GPU per step, on top
  // of what the workers report as staging headroom; 0 = headroom only.
  double max_step_bytes = 0;

  // Dry-run plans (PlacementService.Plan): at most this many at a time, each
  // at most this much work (dry_run.h PlanWork; 0: DefaultMaxPlanWork).
  int max_concurrent_plans = 2;
  int64_t max_plan_work = 0;

  // Two-phase apply: the planner aborts a phase that takes longer.
  absl::Duration apply_timeout = absl::Seconds(60);

  // Placement groups (deploy/planner.yaml, "groups"): independent
  // expert-parallel groups served by this planner, each with its own
  // cluster, committed layout, replan loop and two-phase apply. Empty: one
  // group, kDefaultGroup, made of the keys above.
  std::vector<PlacementGroup> groups;
};

// One placement group as configured: the document's keys with the group's
// own `model`, `cluster`, `nodes`, `loads`, `replan` and `apply` keys
// overriding them.
struct PlacementGroup {
  std::string name;
  // Groups of one family (one model in one role) pool their load windows for
  // planning: each plans on every member's recent windows. "": none.
  std::string stats_family;
  PlannerConfig config;  // its `groups` is empty
};

// The group of a config without `groups`, and the one an agent or a request
// that names none means when there is only one.
inline constexpr char kDefaultGroup[] = "default";
inline constexpr int kMaxGroups = 256;

// Where `group`'s persisted state lives, beside `base` (the state file's
// path, or the etcd key): `base` itself for the only group of a config
// without groups, else "<base>.<group>".
inline std::string GroupStateName(const PlannerConfig& config, absl::string_view base,
                                  absl::string_view group) {
  if (config.groups.empty()) return std::string(base);
  return absl::StrCat(base, ".", group);
}

// The groups a planner serves: config.groups, or the one default group.
// Inline: config.h is the header-only :config_types target.
inline std::vector<PlacementGroup> EffectiveGroups(const PlannerConfig& config) {
  if (!config.groups.empty()) return config.groups;
  return {PlacementGroup{kDefaultGroup, "", config}};
}

// Bounds that keep int64 load sums exact: a count is at most 2^40, a window
// sums at most kMaxGpus replicas of an expert, the aggregate at most
// kMaxWindowHorizon windows (2^40 * 2^12 * 2^10 = 2^62).
inline constexpr int kMaxGpus = 4096;
inline constexpr int kMaxWindowHorizon = 1024;

// Parses `yaml_text`; `file_name` only labels error messages.
absl::StatusOr<PlannerConfig> ParseConfig(absl::string_view yaml_text, absl::string_view file_name);

// Reads and parses the file at `path`.
absl::StatusOr<PlannerConfig> LoadConfigFile(const std::string& path);

}  // namespace craft::server

#endif  // CRAFT_SERVER_CONFIG_H_
