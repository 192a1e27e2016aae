#include "agent/state_file.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/file_io.h"

namespace craft::agent {
namespace {

// "<num_layers>,<num_experts>,<top_k>,<bytes_per_expert>".
absl::StatusOr<craft::v1::ModelShape> ParseModel(absl::string_view text) {
  const std::vector<absl::string_view> fields = absl::StrSplit(text, ',');
  int32_t layers = 0, experts = 0, top_k = 0;
  int64_t bytes = 0;
  if (fields.size() != 4 || !absl::SimpleAtoi(fields[0], &layers) ||
      !absl::SimpleAtoi(fields[1], &experts) || !absl::SimpleAtoi(fields[2], &top_k) ||
      !absl::SimpleAtoi(fields[3], &bytes) || layers <= 0 || experts <= 0 || top_k < 0 ||
      bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad model '", text,
        "' (want num_layers,num_experts,top_k,bytes_per_expert: positive counts, the rest >= 0)"));
  }
  craft::v1::ModelShape model;
  model.set_num_layers(layers);
  model.set_num_experts(experts);
  model.set_top_k(top_k);
  model.set_bytes_per_expert(bytes);
  return model;
}

}  // namespace

bool AgentState::operator==(const AgentState& other) const {
  const auto bytes = [](const std::optional<craft::v1::Layout>& layout) {
    return layout.has_value() ? layout->SerializeAsString() : std::string("none");
  };
  const auto model_bytes = [](const std::optional<craft::v1::ModelShape>& model) {
    return model.has_value() ? model->SerializeAsString() : std::string("none");
  };
  return highest_epoch == other.highest_epoch && committed_version == other.committed_version &&
         committed_layout.has_value() == other.committed_layout.has_value() &&
         bytes(committed_layout) == bytes(other.committed_layout) &&
         model.has_value() == other.model.has_value() &&
         model_bytes(model) == model_bytes(other.model);
}

std::string SerializeAgentState(const AgentState& state) {
  std::string text = absl::StrCat("highest_epoch=", state.highest_epoch, "\n",
                                  "committed_version=", state.committed_version, "\n");
  if (state.committed_layout.has_value()) {
    absl::StrAppend(&text, "committed_layout=",
                    absl::Base64Escape(state.committed_layout->SerializeAsString()), "\n");
  }
  if (state.model.has_value()) {
    const craft::v1::ModelShape& model = *state.model;
    absl::StrAppend(&text, "model=", model.num_layers(), ",", model.num_experts(), ",",
                    model.top_k(), ",", model.bytes_per_expert(), "\n");
  }
  return text;
}

absl::StatusOr<AgentState> ParseAgentState(absl::string_view text) {
  AgentState state;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ++line_number;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("state line ", line_number, ": expected key=value, got '", line, "'"));
    }
    const absl::string_view key = line.substr(0, eq);
    const absl::string_view value = line.substr(eq + 1);
    if (key == "highest_epoch") {
      if (!absl::SimpleAtoi(value, &state.highest_epoch) || state.highest_epoch < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("state line ", line_number, ": bad highest_epoch '", value, "'"));
      }
    } else if (key == "committed_version") {
      state.committed_version = std::string(value);
    } else if (key == "committed_layout") {
      std::string bytes;
      craft::v1::Layout layout;
      if (!absl::Base64Unescape(value, &bytes) || !layout.ParseFromString(bytes)) {
        return absl::InvalidArgumentError(
            absl::StrCat("state line ", line_number, ": committed_layout does not parse"));
      }
      state.committed_layout = std::move(layout);
    } else if (key == "model") {
      absl::StatusOr<craft::v1::ModelShape> model = ParseModel(value);
      if (!model.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("state line ", line_number, ": ", model.status().message()));
      }
      state.model = *std::move(model);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("state line ", line_number, ": unknown key '", key, "'"));
    }
  }
  if (state.committed_layout.has_value() &&
      state.committed_layout->version() != state.committed_version) {
    return absl::InvalidArgumentError(
        absl::StrCat("committed_layout is version '", state.committed_layout->version(),
                     "', committed_version is '", state.committed_version, "'"));
  }
  return state;
}

absl::StatusOr<AgentState> FileStateStore::Load() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::string> text = ReadFileToString(path_);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return AgentState{};  // first start: ENOENT only
    return absl::InternalError(absl::StrCat("cannot read ", text.status().message()));
  }
  absl::StatusOr<AgentState> state = ParseAgentState(*text);
  if (!state.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", state.status().message()));
  }
  return state;
}

absl::Status FileStateStore::Save(const AgentState& state) {
  if (state.committed_version.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("committed_version must not contain a newline");
  }
  absl::MutexLock lock(&mu_);
  return ::craft::WriteFileAtomically(path_, SerializeAgentState(state));
}

absl::StatusOr<AgentState> MemoryStateStore::Load() {
  absl::MutexLock lock(&mu_);
  return state_;
}

absl::Status MemoryStateStore::Save(const AgentState& state) {
  absl::MutexLock lock(&mu_);
  state_ = state;
  return absl::OkStatus();
}

}  // namespace craft::agent
