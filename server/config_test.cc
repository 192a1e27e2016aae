#include "server/config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::server {
namespace {

using ::testing::HasSubstr;

constexpr char kMinimal[] = R"(model:
  num_layers: 58
  num_experts: 256
  top_k: 8
  bytes_per_expert: 88080384
cluster:
  num_gpus: 64
  num_nodes: 8
)";

constexpr char kFull[] = R"(listen_address: "127.0.0.1:0"
state_path: /var/lib/craft/planner.state
security:
  nodes: [n0, n1]
  admins: [ops]
  readers: [engine, grafana]
  admin_token_file: /etc/craft/admin-token
model:
  num_layers: 2
  num_experts: 4
  top_k: 2
  bytes_per_expert: 1000
cluster:
  num_gpus: 4
  num_nodes: 2
loads:
  window_horizon: 16
  decay: 0.9
replan:
  interval_s: 0.5
  algorithm: craft-paper
  method: fresh
  max_moved_fraction: 0.2
  max_step_gb: 1.5
  budget: auto
  memory:
    hbm_gb: 80
    non_expert_gb: 20
    expert_mb: 2
    kv_bytes_per_token: 1024
  candidates: [0, 1, 2]
  no_duplicates: true
  gain_threshold: 0.1
  horizon_s: 300
  transfer_gbps: 25
apply:
  timeout_ms: 1500
)";

// The error of parsing `text`, which must fail.
std::string ErrorOf(const std::string& text) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(text, "planner.yaml");
  EXPECT_FALSE(config.ok()) << "parsed:\n" << text;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST(ConfigTest, MinimalConfigTakesDefaults) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(kMinimal, "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model.num_layers, 58);
  EXPECT_EQ(config->model.bytes_per_expert, 88080384);
  EXPECT_EQ(config->cluster.num_gpus, 64);
  EXPECT_EQ(config->plan.cluster.num_nodes, 8);
  EXPECT_EQ(config->listen_address, "0.0.0.0:50051");
  EXPECT_EQ(config->plan.algorithm, planner::Algorithm::kCraft);
  EXPECT_EQ(config->plan.budget, 8);
  EXPECT_FALSE(config->decay.has_value());
  EXPECT_DOUBLE_EQ(config->plan.memory.bytes_per_expert, 88080384.0);
  EXPECT_TRUE(config->security.admin_token_file.empty());
  EXPECT_TRUE(config->security.nodes.empty());
  EXPECT_EQ(config->security.readers, std::vector<std::string>{"*"});
  EXPECT_EQ(config->replan_method, ReplanMethod::kIncremental);
  EXPECT_DOUBLE_EQ(config->max_moved_fraction, 1.0);
  EXPECT_DOUBLE_EQ(config->max_step_bytes, 0);
}

TEST(ConfigTest, ClockSkewIsSecondsAndZeroTurnsItOff) {
  const std::string base = std::string(kMinimal) + "loads:\n";
  EXPECT_EQ(ParseConfig(kMinimal, "planner.yaml")->max_clock_skew, absl::Seconds(60));
  EXPECT_EQ(ParseConfig(base + "  max_clock_skew_s: 0\n", "planner.yaml")->max_clock_skew,
            absl::ZeroDuration());
  EXPECT_THAT(ErrorOf(base + "  max_clock_skew_s: -3\n"),
              HasSubstr("loads.max_clock_skew_s: -3 is outside [0, 86400]"));
}

TEST(ConfigTest, ReplanMethodKeysAreCheckedWithTheirLine) {
  const std::string base = std::string(kMinimal) + "replan:\n";
  EXPECT_EQ(ErrorOf(base + "  method: greedy\n"),
            "planner.yaml:10:11: replan.method: unknown re-planning method 'greedy' (incremental "
            "or fresh)");
  EXPECT_THAT(ErrorOf(base + "  max_moved_fraction: 1.5\n"),
              HasSubstr("replan.max_moved_fraction: 1.5 is outside [0, 1]"));
  EXPECT_THAT(ErrorOf(base + "  max_step_gb: -1\n"), HasSubstr("replan.max_step_gb"));
  EXPECT_THAT(ErrorOf(base + "  budget: auto\n"),
              HasSubstr("replan.budget: the incremental method moves replicas within a fixed "
                        "budget R"));
  absl::StatusOr<PlannerConfig> fresh =
      ParseConfig(base + "  method: fresh\n  budget: auto\n", "planner.yaml");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->replan_method, ReplanMethod::kFresh);
}

TEST(ConfigTest, FullConfigReadsEveryKey) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(kFull, "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address, "127.0.0.1:0");
  EXPECT_EQ(config->state_path, "/var/lib/craft/planner.state");
  EXPECT_EQ(config->security.admin_token_file, "/etc/craft/admin-token");
  EXPECT_EQ(config->security.nodes, (std::vector<std::string>{"n0", "n1"}));
  EXPECT_EQ(config->security.admins, std::vector<std::string>{"ops"});
  EXPECT_EQ(config->security.readers, (std::vector<std::string>{"engine", "grafana"}));
  EXPECT_EQ(config->window_horizon, 16);
  EXPECT_DOUBLE_EQ(*config->decay, 0.9);
  EXPECT_EQ(config->replan_interval, absl::Milliseconds(500));
  EXPECT_EQ(config->replan_method, ReplanMethod::kFresh);
  EXPECT_DOUBLE_EQ(config->max_moved_fraction, 0.2);
  EXPECT_DOUBLE_EQ(config->max_step_bytes, 1.5e9);
  EXPECT_EQ(config->plan.algorithm, planner::Algorithm::kCraftPaper);
  EXPECT_FALSE(config->plan.budget.has_value());
  EXPECT_DOUBLE_EQ(config->plan.memory.hbm_bytes, 80e9);
  EXPECT_DOUBLE_EQ(config->plan.memory.non_expert_bytes, 20e9);
  EXPECT_DOUBLE_EQ(config->plan.memory.bytes_per_expert, 2e6);
  EXPECT_DOUBLE_EQ(config->plan.memory.kv_bytes_per_token, 1024);
  EXPECT_EQ(config->plan.candidates, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(config->plan.forbid_duplicates);
  EXPECT_DOUBLE_EQ(config->gain_threshold, 0.1);
  EXPECT_DOUBLE_EQ(config->horizon_s, 300);
  EXPECT_DOUBLE_EQ(config->transfer_gbps, 25);
  EXPECT_EQ(config->apply_timeout, absl::Milliseconds(1500));
}

TEST(ConfigTest, InvalidYamlSaysWhere) {
  EXPECT_THAT(ErrorOf("model: [1, 2\n"), HasSubstr("planner.yaml:2:1: invalid YAML"));
}

TEST(ConfigTest, EmptyDocumentIsRejected) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("planner.yaml:1:1: the config is empty"));
}

TEST(ConfigTest, NonMappingRootIsRejected) {
  EXPECT_THAT(ErrorOf("- 1\n- 2\n"), HasSubstr("the document must be a mapping, got a sequence"));
}

TEST(ConfigTest, UnknownTopLevelKeyIsRejectedWithLine) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan_interval: 3\n")),
              HasSubstr("planner.yaml:9:1: unknown key 'replan_interval' (expected one of: "));
}

TEST(ConfigTest, UnknownNestedKeyIsRejectedWithLine) {
  const std::string text = absl::StrCat(kMinimal, "replan:\n  algoritm: craft\n");
  EXPECT_THAT(ErrorOf(text), HasSubstr("planner.yaml:10:3: unknown key 'replan.algoritm'"));
}

TEST(ConfigTest, DuplicateKeyIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "cluster:\n  num_gpus: 8\n")),
              HasSubstr("planner.yaml:9:1: duplicate key 'cluster'"));
}

TEST(ConfigTest, MissingRequiredKeyIsRejected) {
  EXPECT_THAT(ErrorOf("model:\n  num_layers: 2\n  num_experts: 4\n  top_k: 2\n"
                      "cluster:\n  num_gpus: 4\n"),
              HasSubstr("planner.yaml:2:3: missing required key 'model.bytes_per_expert'"));
  EXPECT_THAT(ErrorOf("cluster:\n  num_gpus: 4\n"), HasSubstr("missing required key 'model'"));
}

TEST(ConfigTest, NonIntegerIsRejected) {
  std::string text = kMinimal;
  text.replace(text.find("58"), 2, "5.8");
  EXPECT_THAT(ErrorOf(text),
              HasSubstr("planner.yaml:2:15: model.num_layers: expected an integer, got '5.8'"));
}

TEST(ConfigTest, OutOfRangeIsRejected) {
  std::string text = kMinimal;
  text.replace(text.find("top_k: 8"), 8, "top_k: 0");
  EXPECT_THAT(ErrorOf(text), HasSubstr("planner.yaml:4:10: model.top_k: 0 is outside [1, "));
}

TEST(ConfigTest, WrongKindIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "loads: 5\n")),
              HasSubstr("planner.yaml:9:8: loads must be a mapping, got a scalar"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "listen_address: [a]\n")),
              HasSubstr("listen_address: expected host:port, got a sequence"));
}

TEST(ConfigTest, BadListenAddressIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "listen_address: localhost\n")),
              HasSubstr("planner.yaml:9:17: listen_address: expected host:port"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "listen_address: \"h:70000\"\n")),
              HasSubstr("port in [0, 65535]"));
}

TEST(ConfigTest, BadAlgorithmIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  algorithm: magic\n")),
              HasSubstr("planner.yaml:10:14: replan.algorithm: unknown algorithm 'magic'"));
}

TEST(ConfigTest, BadBudgetIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  budget: lots\n")),
              HasSubstr("replan.budget: expected an integer in [0, 1000000] or 'auto'"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  budget: -1\n")),
              HasSubstr("replan.budget"));
}

TEST(ConfigTest, BadBoolIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  no_duplicates: yes\n")),
              HasSubstr("replan.no_duplicates: expected true or false, got 'yes'"));
}

TEST(ConfigTest, BadNumberIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "loads:\n  decay: 0\n")),
              HasSubstr("loads.decay: 0 is outside (0, 1]"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  transfer_gbps: nan\n")),
              HasSubstr("replan.transfer_gbps: expected a finite number, got 'nan'"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "apply:\n  timeout_ms: -5\n")),
              HasSubstr("apply.timeout_ms: -5 is outside (0, "));
}

TEST(ConfigTest, BadCandidatesAreRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  candidates: []\n")),
              HasSubstr("replan.candidates: expected a non-empty sequence of integers"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  candidates: [0, x]\n")),
              HasSubstr("replan.candidates[1]: expected an integer, got 'x'"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  candidates: [0, 999999]\n")),
              HasSubstr("planner.yaml:10:3: replan.candidates: candidate 999999 exceeds"));
}

TEST(ConfigTest, InconsistentClusterIsRejected) {
  std::string text = kMinimal;
  text.replace(text.find("num_nodes: 8"), 12, "num_nodes: 7");
  EXPECT_THAT(ErrorOf(text),
              HasSubstr("planner.yaml:8:3: cluster.num_nodes: 64 GPUs do not divide evenly"));
}

TEST(ConfigTest, SecurityNamesAreChecked) {
  const std::string base = std::string(kMinimal) + "security:\n  nodes: ";
  EXPECT_THAT(ErrorOf(base + "[n0, n1]\n"),
              HasSubstr("security.nodes: 2 node names for 8 nodes (cluster.num_nodes)"));
  EXPECT_THAT(ErrorOf(base + "[n0, n0, n2, n3, n4, n5, n6, n7]\n"),
              HasSubstr("security.nodes[1]: 'n0' is listed twice"));
  EXPECT_THAT(ErrorOf(base + "[n0, 'a b', n2, n3, n4, n5, n6, n7]\n"),
              HasSubstr("security.nodes[1]: 'a b' is not a name"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "security:\n  admins: ['*']\n"),
              HasSubstr("security.admins[0]: '*' is not a name"));
  EXPECT_THAT(ErrorOf(std::string(kMinimal) + "admin_token: s3cret\n"),
              HasSubstr("admin_token: this key was replaced by security.admin_token_file"));
}

TEST(ConfigTest, TopKAboveExpertsIsRejected) {
  std::string text = kMinimal;
  text.replace(text.find("top_k: 8"), 8, "top_k: 300");
  EXPECT_THAT(ErrorOf(text), HasSubstr("model.top_k: top_k 300 exceeds num_experts 256"));
}

TEST(ConfigTest, EplbWithNoDuplicatesIsRejected) {
  EXPECT_THAT(
      ErrorOf(absl::StrCat(kMinimal, "replan:\n  algorithm: eplb\n  no_duplicates: true\n")),
      HasSubstr("planner.yaml:11:3: replan.no_duplicates: eplb reproduces"));
}

TEST(ConfigTest, UniformLayoutsAreCheckedWithTheirLine) {
  absl::StatusOr<PlannerConfig> config =
      ParseConfig(absl::StrCat(kMinimal, "replan:\n  uniform: true\n  redundant_per_layer: 128\n"),
                  "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->plan.uniform);
  EXPECT_EQ(config->plan.redundant_per_layer, 128);
  // 256 experts + 100 do not divide over 64 GPUs.
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal,
                                   "replan:\n  uniform: true\n  redundant_per_layer: "
                                   "100\n")),
              HasSubstr("planner.yaml:11:3: replan.redundant_per_layer: a uniform layout needs "
                        "the same slots on every GPU, but 256 experts + 100 redundant slots per "
                        "layer do not divide over 64 GPUs (try 64 or 128"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  uniform: true\n  algorithm: none\n")),
              HasSubstr("replan.uniform: uniform layouts are planned by craft"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  redundant_per_layer: -1\n")),
              HasSubstr("replan.redundant_per_layer: -1 is outside"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  uniform: 1\n")),
              HasSubstr("replan.uniform: expected true or false, got '1'"));
}

TEST(ConfigTest, MemoryWithoutRoomIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  memory:\n    hbm_gb: 40\n")),
              HasSubstr("replan.memory.hbm_gb: non_expert_gb must be below hbm_gb"));
}

TEST(ConfigTest, NonScalarKeyIsRejected) {
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "? [a, b]\n: 1\n")),
              HasSubstr("keys must be plain names"));
}

TEST(ConfigTest, ShippedConfigsParse) {
  const char* root = std::getenv("TEST_SRCDIR");
  for (const char* file : {"deploy/planner.yaml", "deploy/k8s/base/planner-config.yaml",
                           "deploy/planner-disaggregated.yaml"}) {
    const std::string path = root ? std::string(root) + "/craft/" + file : file;
    absl::StatusOr<PlannerConfig> config = LoadConfigFile(path);
    ASSERT_TRUE(config.ok()) << file << ": " << config.status();
    for (const PlacementGroup& group : EffectiveGroups(*config)) {
      EXPECT_EQ(static_cast<int>(group.config.security.nodes.size()),
                group.config.cluster.num_nodes)
          << file << ", group " << group.name << " must name every node (secure by default)";
    }
  }
}

// A calibration file in the test's temp dir; returns its path.
std::string WriteCalibration(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

constexpr char kCalibration[] = R"(version: 1
gpu: NVIDIA H200
expert: {hidden: 7168, intermediate: 2048, dtype: bf16}
model: {fixed_us: 70, per_token_us: 0.125, knee_sharpness: 4}
)";

TEST(ConfigTest, RooflineObjectiveLoadsItsCalibration) {
  const std::string path = WriteCalibration("good.yaml", kCalibration);
  auto config = ParseConfig(absl::StrCat(kMinimal,
                                         "replan:\n  method: fresh\n  objective: roofline\n"
                                         "  roofline:\n    calibration: ",
                                         path, "\n    tokens_per_gpu: 256\n"),
                            "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->plan.objective, planner::CraftObjective::kRoofline);
  ASSERT_TRUE(config->plan.roofline.has_value());
  EXPECT_DOUBLE_EQ(config->plan.roofline->params().fixed_us, 70);
  EXPECT_DOUBLE_EQ(config->plan.roofline->regime().tokens_per_gpu, 256);
  EXPECT_EQ(config->plan.roofline->regime().top_k, 8);  // model.top_k
}

TEST(ConfigTest, RooflineMistakesAreRejectedWithTheirKey) {
  const std::string good = WriteCalibration("good.yaml", kCalibration);
  const std::string bad = WriteCalibration("bad.yaml", absl::StrCat(kCalibration, "extra: 1\n"));
  const auto roofline = [](const std::string& method, const std::string& section) {
    return absl::StrCat(kMinimal, "replan:\n  method: ", method, "\n  objective: roofline\n",
                        section);
  };
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  objective: fastest\n")),
              HasSubstr("replan.objective: unknown objective 'fastest'"));
  EXPECT_THAT(ErrorOf(roofline("fresh", "")),
              HasSubstr("replan.objective: roofline needs replan.roofline"));
  EXPECT_THAT(ErrorOf(roofline("incremental", absl::StrCat("  roofline: {calibration: ", good,
                                                           ", tokens_per_gpu: 64}\n"))),
              HasSubstr("roofline needs replan.method: fresh"));
  EXPECT_THAT(ErrorOf(roofline("fresh", "  roofline: {tokens_per_gpu: 64}\n")),
              HasSubstr("missing required key 'replan.roofline.calibration'"));
  EXPECT_THAT(ErrorOf(roofline("fresh", absl::StrCat("  roofline: {calibration: ", good,
                                                     ", tokens_per_gpu: -4}\n"))),
              HasSubstr("replan.roofline.tokens_per_gpu"));
  EXPECT_THAT(ErrorOf(roofline("fresh", absl::StrCat("  roofline: {calibration: ", bad,
                                                     ", tokens_per_gpu: 64}\n"))),
              HasSubstr("bad.yaml:5:1: unknown key 'extra'"));
  EXPECT_THAT(ErrorOf(roofline("fresh",
                               "  roofline: {calibration: /nonexistent.yaml, "
                               "tokens_per_gpu: 64}\n")),
              HasSubstr("replan.roofline.calibration: cannot open calibration file"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "replan:\n  roofline: {calibration: ", good,
                                   ", tokens_per_gpu: 64}\n")),
              HasSubstr("replan.roofline: is read only with replan.objective: roofline"));
}

TEST(ConfigTest, HighAvailabilitySectionParses) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(
      absl::StrCat(kMinimal,
                   "ha:\n  etcd_endpoints: [10.0.0.1:2379, 'etcd-1:2379']\n  prefix: /craft/prod\n"
                   "  lease_ttl_s: 3\n  etcd_timeout_ms: 500\n  etcd_cert: c.pem\n"
                   "  etcd_key: k.pem\n  etcd_ca: ca.pem\n  etcd_server_name: etcd\n"),
      "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->ha.enabled());
  EXPECT_EQ(config->ha.etcd_endpoints, (std::vector<std::string>{"10.0.0.1:2379", "etcd-1:2379"}));
  EXPECT_EQ(config->ha.prefix, "/craft/prod");
  EXPECT_EQ(config->ha.lease_ttl, absl::Seconds(3));
  EXPECT_EQ(config->ha.etcd_timeout, absl::Milliseconds(500));
  EXPECT_FALSE(ParseConfig(kMinimal, "planner.yaml")->ha.enabled());
}

TEST(ConfigTest, HighAvailabilityMistakesAreRejectedWithTheirKey) {
  const auto ha = [](const std::string& body) {
    return ErrorOf(absl::StrCat(kMinimal, "ha:\n", body));
  };
  EXPECT_THAT(ha("  prefix: /craft/x\n"), HasSubstr("missing required key 'ha.etcd_endpoints'"));
  EXPECT_THAT(ha("  etcd_endpoints: []\n  etcd_insecure: true\n"),
              HasSubstr("ha.etcd_endpoints: expected a non-empty sequence of host:port"));
  EXPECT_THAT(ha("  etcd_endpoints: [etcd]\n  etcd_insecure: true\n"),
              HasSubstr("ha.etcd_endpoints[0]: expected host:port"));
  EXPECT_THAT(ha("  etcd_endpoints: [e:1]\n  etcd_insecure: true\n  prefix: craft/\n"),
              HasSubstr("ha.prefix: expected a key prefix"));
  EXPECT_THAT(ha("  etcd_endpoints: [e:1]\n  etcd_insecure: true\n  lease_ttl_s: 0\n"),
              HasSubstr("ha.lease_ttl_s"));
  EXPECT_THAT(ha("  etcd_endpoints: [e:1]\n  etcd_insecure: maybe\n"),
              HasSubstr("ha.etcd_insecure: expected true or false"));
  EXPECT_THAT(ha("  etcd_endpoints: [e:1]\n"),
              HasSubstr("etcd_cert, etcd_key and etcd_ca are required"));
  EXPECT_THAT(ha("  etcd_endpoints: [e:1]\n  etcd_insecure: true\n  leader: me\n"),
              HasSubstr("unknown key 'ha.leader'"));
}

// A prefill and a decode pool of one model, pooling their load statistics.
constexpr char kGroups[] = R"(model:
  num_layers: 2
  num_experts: 4
  top_k: 2
  bytes_per_expert: 1000
replan:
  budget: 4
groups:
  - name: prefill
    stats_family: dsv3
    cluster: {num_gpus: 4, num_nodes: 2}
    nodes: [p0, p1]
  - name: decode
    stats_family: dsv3
    cluster: {num_gpus: 8, num_nodes: 2}
    nodes: [d0, d1]
    replan: {budget: 2, interval_s: 5}
)";

TEST(ConfigTest, GroupsInheritTheDocumentAndOverrideIt) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(kGroups, "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const std::vector<PlacementGroup> groups = EffectiveGroups(*config);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].name, "prefill");
  EXPECT_EQ(groups[0].stats_family, "dsv3");
  EXPECT_EQ(groups[0].config.cluster.num_gpus, 4);
  EXPECT_EQ(groups[0].config.plan.cluster.num_gpus, 4);
  EXPECT_EQ(groups[0].config.model.num_layers, 2);
  EXPECT_EQ(groups[0].config.plan.budget, 4);
  EXPECT_EQ(groups[0].config.replan_interval, absl::Seconds(30));
  EXPECT_THAT(groups[0].config.security.nodes, ::testing::ElementsAre("p0", "p1"));
  EXPECT_EQ(groups[1].config.cluster.num_gpus, 8);
  EXPECT_EQ(groups[1].config.plan.budget, 2);
  EXPECT_EQ(groups[1].config.replan_interval, absl::Seconds(5));
  EXPECT_DOUBLE_EQ(groups[1].config.plan.memory.bytes_per_expert, 1000);
  for (const PlacementGroup& group : groups) EXPECT_TRUE(group.config.groups.empty());
}

TEST(ConfigTest, GroupsWorkWithHighAvailability) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(
      absl::StrCat(kGroups, "ha: {etcd_endpoints: [\"127.0.0.1:2379\"], etcd_insecure: true}\n"),
      "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->ha.enabled());
  EXPECT_EQ(config->groups.size(), 2u);
}

TEST(ConfigTest, WithoutGroupsThereIsOneDefaultGroup) {
  absl::StatusOr<PlannerConfig> config = ParseConfig(kMinimal, "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const std::vector<PlacementGroup> groups = EffectiveGroups(*config);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].name, kDefaultGroup);
  EXPECT_EQ(groups[0].config.cluster.num_gpus, 64);
}

TEST(ConfigTest, GroupMistakesAreRejectedWithTheirKey) {
  const std::string head =
      "model: {num_layers: 2, num_experts: 4, top_k: 2, bytes_per_expert: 1}\n";
  const std::string one = "  - name: a\n    cluster: {num_gpus: 2}\n";
  EXPECT_THAT(ErrorOf(head + "groups: 3\n"),
              HasSubstr("planner.yaml:2:9: groups: expected a non-empty sequence of groups"));
  EXPECT_THAT(ErrorOf(head + "groups: []\n"), HasSubstr("expected a non-empty sequence"));
  EXPECT_THAT(ErrorOf(head + "groups:\n  - 5\n"),
              HasSubstr("planner.yaml:3:5: groups[0] must be a mapping, got a scalar"));
  EXPECT_THAT(ErrorOf(head + "groups:\n  - cluster: {num_gpus: 2}\n"),
              HasSubstr("planner.yaml:3:5: missing required key 'groups[0].name'"));
  EXPECT_THAT(ErrorOf(head + "groups:\n  - name: a\n"),
              HasSubstr("planner.yaml:3:5: groups[0]: missing required key 'cluster'"));
  EXPECT_THAT(ErrorOf(head + "groups:\n  - name: Prefill_1\n    cluster: {num_gpus: 2}\n"),
              HasSubstr("planner.yaml:3:5: groups[0].name: 'Prefill_1' is not a group name"));
  EXPECT_THAT(ErrorOf(head + "groups:\n" + one + one),
              HasSubstr("planner.yaml:5:5: groups[1].name: group 'a' is declared twice"));
  EXPECT_THAT(ErrorOf(head + "groups:\n" + one + "    listen_address: \"1.2.3.4:5\"\n"),
              HasSubstr("planner.yaml:5:5: unknown key 'groups[0].listen_address'"));
  EXPECT_THAT(ErrorOf(head + "groups:\n" + one + "    replan: {budget: lots}\n"),
              HasSubstr("planner.yaml:5:22: groups[0].replan.budget: expected an integer in [0, "
                        "1000000] or 'auto'"));
  EXPECT_THAT(ErrorOf(head + "groups:\n  - name: a\n    cluster: {num_gpus: 3, num_nodes: 2}\n"),
              HasSubstr("planner.yaml:4:28: groups[0].cluster.num_nodes: 3 GPUs do not divide"));
  EXPECT_THAT(ErrorOf(head + "groups:\n" + one + "    nodes: [n0, n1]\n"),
              HasSubstr("groups[0].nodes: 2 node names for 1 nodes"));
  EXPECT_THAT(ErrorOf(head + "groups:\n" + one + "    nodes: [n0]\n" +
                      "  - name: b\n    cluster: {num_gpus: 2}\n    nodes: [n0]\n"),
              HasSubstr("planner.yaml:8:5: groups[1].nodes: node 'n0' is already in group 'a'"));
  EXPECT_THAT(ErrorOf(head + "security: {nodes: [n0]}\ngroups:\n" + one),
              HasSubstr("security.nodes: with groups, each group names its nodes"));
  EXPECT_THAT(
      ErrorOf(head + "groups:\n" + one + "    stats_family: f\n" +
              "  - name: b\n    cluster: {num_gpus: 2}\n    stats_family: f\n" +
              "    model: {num_layers: 3, num_experts: 4, top_k: 2, bytes_per_expert: 1}\n"),
      HasSubstr("groups[1].stats_family: group 'b' (3 layers x 4 experts) cannot pool "
                "loads with group 'a' (2 x 4) in family 'f'"));
  EXPECT_THAT(ErrorOf("cluster: {num_gpus: 2}\ngroups:\n" + one),
              HasSubstr("missing required key 'model'"));
  EXPECT_THAT(ErrorOf(head), HasSubstr("missing required key 'cluster'"));
}

TEST(ConfigTest, AGroupsInheritedMistakeIsReportedAtTheDocumentsKey) {
  const std::string text =
      "model: {num_layers: 2, num_experts: 4, top_k: 2, bytes_per_expert: 1}\n"
      "replan:\n  candidates: [0, 7]\n"
      "groups:\n  - name: big\n    cluster: {num_gpus: 4}\n  - name: small\n"
      "    cluster: {num_gpus: 2}\n";
  EXPECT_THAT(ErrorOf(text), HasSubstr("planner.yaml:3:3: replan.candidates: candidate 7 exceeds"));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<PlannerConfig> config = LoadConfigFile("/nonexistent/planner.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace craft::server
