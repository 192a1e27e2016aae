// craftctl's flags, all in one place: Abseil flags with underscore names
// (docs/flags.md), parsed once per run for the command given
// (command_line.h), read by the commands with absl::GetFlag. The mutual-TLS
// flags (--tls_cert, --tls_key, --tls_ca, --insecure) are every binary's,
// from common/transport_flags.h.
//
// A flag several commands take means the same in each; where the default
// differs by command (--out, --format) the flag is empty by default and the
// command says what empty means.
#ifndef CRAFT_TOOLS_CRAFTCTL_FLAGS_H_
#define CRAFT_TOOLS_CRAFTCTL_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace craft::ctl {

// A comma-separated list of integers ("0,1,2,4"), parsed by Abseil through
// AbslParseFlag.
struct IntList {
  std::vector<int> values;
};
bool AbslParseFlag(absl::string_view text, IntList* list, std::string* error);
std::string AbslUnparseFlag(const IntList& list);

// A floating-point flag's value; INVALID_ARGUMENT naming the flag when it is
// not finite (Abseil reads "nan" and "inf" as numbers).
absl::StatusOr<double> FiniteFlag(const absl::Flag<double>& flag);
absl::StatusOr<std::optional<double>> FiniteFlag(const absl::Flag<std::optional<double>>& flag);

// The entries of a list flag, empty ones left out ("craft," is "craft").
std::vector<std::string> ListFlag(const absl::Flag<std::vector<std::string>>& flag);

}  // namespace craft::ctl

// Files.
ABSL_DECLARE_FLAG(std::string, loads);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(std::string, previous);

// Planning (plan, eval).
ABSL_DECLARE_FLAG(std::string, algorithm);
ABSL_DECLARE_FLAG(std::optional<int>, gpus);
ABSL_DECLARE_FLAG(int, nodes);
ABSL_DECLARE_FLAG(int, groups);
ABSL_DECLARE_FLAG(std::optional<int>, redundant_per_layer);
ABSL_DECLARE_FLAG(std::string, budget);
ABSL_DECLARE_FLAG(craft::ctl::IntList, candidates);
ABSL_DECLARE_FLAG(std::string, objective);
ABSL_DECLARE_FLAG(std::string, calibration);
ABSL_DECLARE_FLAG(std::optional<double>, tokens_per_gpu);
ABSL_DECLARE_FLAG(std::optional<int>, top_k);
ABSL_DECLARE_FLAG(bool, no_duplicates);
ABSL_DECLARE_FLAG(bool, uniform);
ABSL_DECLARE_FLAG(int, threads);
ABSL_DECLARE_FLAG(double, hbm_gb);
ABSL_DECLARE_FLAG(double, non_expert_gb);
ABSL_DECLARE_FLAG(double, expert_mb);
ABSL_DECLARE_FLAG(double, kv_bytes_per_token);

// plan: incremental re-plans and the SGLang export.
ABSL_DECLARE_FLAG(std::optional<double>, max_moved_fraction);
ABSL_DECLARE_FLAG(std::optional<double>, max_moved_gb);
ABSL_DECLARE_FLAG(std::optional<int>, num_hidden_layers);
ABSL_DECLARE_FLAG(std::string, moe_layers);

// eval.
ABSL_DECLARE_FLAG(std::vector<std::string>, algorithms);
ABSL_DECLARE_FLAG(std::vector<std::string>, layouts);
ABSL_DECLARE_FLAG(double, holdout);
ABSL_DECLARE_FLAG(double, frontier_step);

// synth.
ABSL_DECLARE_FLAG(int, layers);
ABSL_DECLARE_FLAG(int, experts);
ABSL_DECLARE_FLAG(int, windows);
ABSL_DECLARE_FLAG(int, tokens_per_window);
ABSL_DECLARE_FLAG(int64_t, seed);
ABSL_DECLARE_FLAG(double, skewed_fraction);
ABSL_DECLARE_FLAG(double, min_hot);
ABSL_DECLARE_FLAG(double, max_hot);
ABSL_DECLARE_FLAG(double, drift);

// Planner queries.
ABSL_DECLARE_FLAG(std::string, planner);
ABSL_DECLARE_FLAG(std::string, group);
ABSL_DECLARE_FLAG(std::string, target);
ABSL_DECLARE_FLAG(int, timeout_ms);
ABSL_DECLARE_FLAG(std::string, server_name);
ABSL_DECLARE_FLAG(std::string, token_file);
ABSL_DECLARE_FLAG(bool, force);
ABSL_DECLARE_FLAG(int, count);

#endif  // CRAFT_TOOLS_CRAFTCTL_FLAGS_H_
