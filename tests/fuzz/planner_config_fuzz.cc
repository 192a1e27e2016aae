// Fuzzes the planner's YAML configuration parser (server/config.cc). Input:
// YAML text.
//
// Every refusal is INVALID_ARGUMENT naming file:line:column; every accepted
// configuration satisfies the checks the rest of the planner relies on.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/config.h"
#include "tests/fuzz/fuzz_target.h"

namespace craft::fuzz {
namespace {

constexpr absl::string_view kFile = "fuzz.yaml";

// "fuzz.yaml:LINE:COLUMN: ..." with LINE and COLUMN positive.
bool NamesPosition(absl::string_view message) {
  if (!absl::ConsumePrefix(&message, kFile) || !absl::ConsumePrefix(&message, ":")) return false;
  for (int part = 0; part < 2; ++part) {
    size_t digits = 0;
    while (digits < message.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(message[digits]))) {
      ++digits;
    }
    if (digits == 0 || message[0] == '0' || digits == message.size() || message[digits] != ':') {
      return false;
    }
    message.remove_prefix(digits + 1);
  }
  return true;
}

void CheckAccepted(const server::PlannerConfig& config) {
  CRAFT_FUZZ_CHECK(config.cluster.Validate().ok()) << config.cluster.Validate();
  CRAFT_FUZZ_CHECK(config.cluster.num_gpus <= server::kMaxGpus) << config.cluster.num_gpus;
  CRAFT_FUZZ_CHECK(config.plan.cluster.num_gpus == config.cluster.num_gpus &&
                   config.plan.cluster.num_nodes == config.cluster.num_nodes);
  const server::ModelShape& model = config.model;
  CRAFT_FUZZ_CHECK(model.num_layers > 0 && model.num_experts > 0 && model.top_k > 0 &&
                   model.top_k <= model.num_experts && model.bytes_per_expert > 0)
      << model.num_layers << " x " << model.num_experts << " top-" << model.top_k;
  CRAFT_FUZZ_CHECK(config.window_horizon >= 1 && config.window_horizon <= server::kMaxWindowHorizon)
      << config.window_horizon;
  CRAFT_FUZZ_CHECK(!config.decay.has_value() || (*config.decay > 0 && *config.decay <= 1))
      << *config.decay;
  CRAFT_FUZZ_CHECK(config.replan_interval > absl::ZeroDuration() &&
                   config.apply_timeout > absl::ZeroDuration() &&
                   config.max_clock_skew >= absl::ZeroDuration());
  CRAFT_FUZZ_CHECK(config.replan_method != server::ReplanMethod::kIncremental ||
                   config.plan.budget.has_value())
      << "incremental re-planning without a budget";
  CRAFT_FUZZ_CHECK(!config.plan.budget.has_value() || *config.plan.budget >= 0);
  CRAFT_FUZZ_CHECK(config.max_moved_fraction >= 0 && config.max_moved_fraction <= 1 &&
                   config.gain_threshold >= 0 && config.transfer_gbps > 0 &&
                   config.max_concurrent_plans >= 1 && config.max_plan_work >= 0);
  CRAFT_FUZZ_CHECK(config.plan.memory.non_expert_bytes < config.plan.memory.hbm_bytes);
  // Node names are given for every node or not at all, each once.
  const std::vector<std::string>& nodes = config.security.nodes;
  CRAFT_FUZZ_CHECK(nodes.empty() || static_cast<int>(nodes.size()) == config.cluster.num_nodes)
      << nodes.size() << " node names for " << config.cluster.num_nodes << " nodes";
  CRAFT_FUZZ_CHECK(std::set<std::string>(nodes.begin(), nodes.end()).size() == nodes.size())
      << "a node name listed twice";
  const int64_t max_candidate = int64_t{model.num_experts} * (config.cluster.num_gpus - 1);
  for (int candidate : config.plan.candidates) {
    CRAFT_FUZZ_CHECK(candidate >= 0 && candidate <= max_candidate) << "candidate " << candidate;
  }
}

}  // namespace

const google::protobuf::Message* InputMessage() { return nullptr; }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<craft::server::PlannerConfig> config =
      craft::server::ParseConfig(text, craft::fuzz::kFile);
  if (config.ok()) {
    craft::fuzz::CheckAccepted(*config);
    return 0;
  }
  CRAFT_FUZZ_CHECK(absl::IsInvalidArgument(config.status())) << config.status();
  CRAFT_FUZZ_CHECK(craft::fuzz::NamesPosition(config.status().message()))
      << "an error that does not say where: " << config.status();
  return 0;
}
