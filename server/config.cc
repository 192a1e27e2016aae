#include "server/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_io.h"
#include "common/names.h"
#include "common/status_macros.h"
#include "planner/cost/calibration.h"
#include "planner/craft/uniform.h"
#include "planner/plan.h"

namespace craft::server {
namespace {

// A value in the document together with where it is and what it is called,
// so that every error can say file:line:column and the dotted key.
struct Value {
  YAML::Node node;
  YAML::Mark mark;   // the value's position, or its key's when it has none
  std::string path;  // e.g. "replan.budget"; "" for the document root
};

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing";
  }
}

// Parses one document into a PlannerConfig. Each key is described once by a
// Field: its name, whether it is required and how its value is read; the
// generic ParseMapping does the key checks (unknown, duplicate, missing).
class Parser {
 public:
  using FieldParser = std::function<absl::Status(const Value&)>;
  struct Field {
    absl::string_view name;
    FieldParser parse;
    bool required = false;
  };

  explicit Parser(absl::string_view file_name) : file_name_(file_name) {}

  absl::Status ErrorAt(const YAML::Mark& mark, absl::string_view reason) const {
    const int line = mark.line >= 0 ? mark.line + 1 : 1;
    const int column = mark.column >= 0 ? mark.column + 1 : 1;
    return absl::InvalidArgumentError(
        absl::StrCat(file_name_, ":", line, ":", column, ": ", reason));
  }
  absl::Status ErrorAt(const Value& value, absl::string_view reason) const {
    return ErrorAt(value.mark, absl::StrCat(value.path, ": ", reason));
  }
  // An error about a key that was parsed earlier (for cross-field checks).
  absl::Status ErrorAtKey(absl::string_view path, absl::string_view reason) const {
    auto it = key_marks_.find(std::string(path));
    return ErrorAt(it == key_marks_.end() ? YAML::Mark() : it->second,
                   absl::StrCat(path, ": ", reason));
  }
  bool Has(absl::string_view path) const { return key_marks_.count(std::string(path)) > 0; }

  // Checks `map` is a mapping whose keys are all in `fields`, none twice and
  // every required one present, and parses each value with its field.
  absl::Status ParseMapping(const Value& map, const std::vector<Field>& fields) {
    if (!map.node.IsMap()) {
      return ErrorAt(map.mark, absl::StrCat(map.path.empty() ? "the document" : map.path,
                                            " must be a mapping, got ", KindName(map.node)));
    }
    std::set<std::string> seen;
    for (auto it = map.node.begin(); it != map.node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) return ErrorAt(key.Mark(), "keys must be plain names");
      const std::string name = key.Scalar();
      const std::string path = map.path.empty() ? name : absl::StrCat(map.path, ".", name);
      const Field* field = Find(fields, name);
      if (field == nullptr) {
        return ErrorAt(key.Mark(), absl::StrCat("unknown key '", path,
                                                "' (expected one of: ", Names(fields), ")"));
      }
      if (!seen.insert(name).second) {
        return ErrorAt(key.Mark(), absl::StrCat("duplicate key '", path, "'"));
      }
      key_marks_[path] = key.Mark();
      const YAML::Node value = it->second;
      const YAML::Mark mark = value.Mark().line >= 0 ? value.Mark() : key.Mark();
      CRAFT_RETURN_IF_ERROR(field->parse(Value{value, mark, path}));
    }
    for (const Field& field : fields) {
      if (field.required && seen.count(std::string(field.name)) == 0) {
        return ErrorAt(map.mark, absl::StrCat("missing required key '",
                                              map.path.empty() ? "" : absl::StrCat(map.path, "."),
                                              field.name, "'"));
      }
    }
    return absl::OkStatus();
  }

  FieldParser Section(std::vector<Field> fields) {
    return [this, fields = std::move(fields)](const Value& value) {
      return ParseMapping(value, fields);
    };
  }

  absl::StatusOr<std::string> Scalar(const Value& value, absl::string_view expected) const {
    if (!value.node.IsScalar()) {
      return ErrorAt(value, absl::StrCat("expected ", expected, ", got ", KindName(value.node)));
    }
    return value.node.Scalar();
  }

  absl::StatusOr<int64_t> Int(const Value& value, int64_t min, int64_t max) const {
    CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, "an integer"));
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(text, &parsed)) {
      return ErrorAt(value, absl::StrCat("expected an integer, got '", text, "'"));
    }
    if (parsed < min || parsed > max) {
      return ErrorAt(value, absl::StrCat(parsed, " is outside [", min, ", ", max, "]"));
    }
    return parsed;
  }

  // A finite number in [min, max], or in (min, max] when `min_exclusive`.
  absl::StatusOr<double> Double(const Value& value, double min, double max,
                                bool min_exclusive = false) const {
    CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, "a number"));
    double parsed = 0;
    if (!absl::SimpleAtod(text, &parsed) || !std::isfinite(parsed)) {
      return ErrorAt(value, absl::StrCat("expected a finite number, got '", text, "'"));
    }
    if (parsed < min || parsed > max || (min_exclusive && parsed == min)) {
      return ErrorAt(value, absl::StrCat(text, " is outside ", min_exclusive ? "(" : "[", min, ", ",
                                         max, "]"));
    }
    return parsed;
  }

  template <typename T>
  FieldParser IntField(T* out, int64_t min, int64_t max) {
    return [this, out, min, max](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(int64_t parsed, Int(value, min, max));
      *out = static_cast<T>(parsed);
      return absl::OkStatus();
    };
  }

  FieldParser DoubleField(double* out, double min, double max, bool min_exclusive = false) {
    return [this, out, min, max, min_exclusive](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(*out, Double(value, min, max, min_exclusive));
      return absl::OkStatus();
    };
  }

  // A number scaled by `unit` (e.g. GB -> bytes).
  FieldParser ScaledField(double* out, double unit) {
    return [this, out, unit](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(double parsed, Double(value, 0, 1e15, /*min_exclusive=*/true));
      *out = parsed * unit;
      return absl::OkStatus();
    };
  }

  FieldParser StringField(std::string* out) {
    return [this, out](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(*out, Scalar(value, "a string"));
      return absl::OkStatus();
    };
  }

  // A sequence of DNS names (certificate identities), no duplicates; `star`
  // also admits "*".
  FieldParser NameListField(std::vector<std::string>* out, bool star) {
    return [this, out, star](const Value& value) -> absl::Status {
      if (!value.node.IsSequence()) {
        return ErrorAt(value,
                       absl::StrCat("expected a sequence of names, got ", KindName(value.node)));
      }
      out->clear();
      std::set<std::string> seen;
      for (size_t i = 0; i < value.node.size(); ++i) {
        const Value item{value.node[i], value.node[i].Mark(),
                         absl::StrCat(value.path, "[", i, "]")};
        CRAFT_ASSIGN_OR_RETURN(std::string name, Scalar(item, "a name"));
        if (!(star && name == "*") && !IsValidName(name)) {
          return ErrorAt(
              item, absl::StrCat("'", name, "' is not a name (1 to ", kMaxNameBytes,
                                 " letters, digits, '-', '.' or '_')", star ? ", or '*'" : ""));
        }
        if (!seen.insert(name).second) {
          return ErrorAt(item, absl::StrCat("'", name, "' is listed twice"));
        }
        out->push_back(std::move(name));
      }
      return absl::OkStatus();
    };
  }

  // A key that was replaced: refused with a pointer to its successor.
  FieldParser MovedField(absl::string_view successor) {
    return [this, successor](const Value& value) -> absl::Status {
      return ErrorAt(value, absl::StrCat("this key was replaced by ", successor));
    };
  }

  FieldParser BoolField(bool* out) {
    return [this, out](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, "true or false"));
      if (text != "true" && text != "false") {
        return ErrorAt(value, absl::StrCat("expected true or false, got '", text, "'"));
      }
      *out = text == "true";
      return absl::OkStatus();
    };
  }

  // A duration given as a number of `unit`s (seconds, milliseconds); zero
  // is allowed only where it means "off".
  FieldParser DurationField(absl::Duration* out, absl::Duration unit, double max,
                            bool zero_allowed = false) {
    return [this, out, unit, max, zero_allowed](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(double parsed, Double(value, 0, max, /*min_exclusive=*/!zero_allowed));
      *out = parsed * unit;
      return absl::OkStatus();
    };
  }
  FieldParser NonNegativeDurationField(absl::Duration* out, absl::Duration unit, double max) {
    return DurationField(out, unit, max, /*zero_allowed=*/true);
  }

  FieldParser ListenAddressField(std::string* out) {
    return [this, out](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, "host:port"));
      const size_t colon = text.rfind(':');
      int port = -1;
      if (colon == std::string::npos || colon == 0 ||
          !absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) {
        return ErrorAt(
            value, absl::StrCat("expected host:port with a port in [0, 65535], got '", text, "'"));
      }
      *out = text;
      return absl::OkStatus();
    };
  }

  // A name `parse` turns into a T (an algorithm, a re-planning method).
  template <typename T>
  FieldParser NamedField(T* out, absl::StatusOr<T> (*parse)(absl::string_view), const char* what) {
    return [this, out, parse, what](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, what));
      absl::StatusOr<T> parsed = parse(text);
      if (!parsed.ok()) return ErrorAt(value, parsed.status().message());
      *out = *parsed;
      return absl::OkStatus();
    };
  }

  // An integer R >= 0, or "auto" (unset).
  FieldParser BudgetField(std::optional<int>* out) {
    return [this, out](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(value, "an integer or 'auto'"));
      if (text == "auto") {
        out->reset();
        return absl::OkStatus();
      }
      int parsed = -1;
      if (!absl::SimpleAtoi(text, &parsed) || parsed < 0 || parsed > 1'000'000) {
        return ErrorAt(
            value, absl::StrCat("expected an integer in [0, 1000000] or 'auto', got '", text, "'"));
      }
      *out = parsed;
      return absl::OkStatus();
    };
  }

  FieldParser IntListField(std::vector<int>* out) {
    return [this, out](const Value& value) -> absl::Status {
      if (!value.node.IsSequence() || value.node.size() == 0) {
        return ErrorAt(value, absl::StrCat("expected a non-empty sequence of integers, got ",
                                           KindName(value.node)));
      }
      out->clear();
      for (size_t i = 0; i < value.node.size(); ++i) {
        const YAML::Node item = value.node[i];
        CRAFT_ASSIGN_OR_RETURN(
            int64_t parsed,
            Int(Value{item, item.Mark(), absl::StrCat(value.path, "[", i, "]")}, 0, 1 << 30));
        out->push_back(static_cast<int>(parsed));
      }
      return absl::OkStatus();
    };
  }

  FieldParser OptionalDoubleField(std::optional<double>* out, double min, double max,
                                  bool min_exclusive) {
    return [this, out, min, max, min_exclusive](const Value& value) -> absl::Status {
      CRAFT_ASSIGN_OR_RETURN(double parsed, Double(value, min, max, min_exclusive));
      *out = parsed;
      return absl::OkStatus();
    };
  }

 private:
  static const Field* Find(const std::vector<Field>& fields, absl::string_view name) {
    for (const Field& field : fields) {
      if (field.name == name) return &field;
    }
    return nullptr;
  }
  static std::string Names(const std::vector<Field>& fields) {
    return absl::StrJoin(fields, ", ",
                         [](std::string* out, const Field& f) { absl::StrAppend(out, f.name); });
  }

  const std::string file_name_;
  std::map<std::string, YAML::Mark> key_marks_;  // every key seen, by dotted path
};

// Where a set of keys lives: the document root, or one entry of `groups`,
// whose keys override the root's. Its key lookups fall back to the root's
// key, which the group inherited.
struct Scope {
  std::string prefix;  // "" or "groups[i]."
  // Read by the fields, resolved by FinishScope.
  bool memory_expert_mb_given = false;
  std::string roofline_calibration;
  double roofline_tokens = 0;

  std::string Key(const Parser& parser, absl::string_view path) const {
    std::string own = absl::StrCat(prefix, path);
    if (!parser.Has(own) && parser.Has(path)) return std::string(path);
    return own;
  }
  bool Has(const Parser& parser, absl::string_view path) const {
    return parser.Has(absl::StrCat(prefix, path)) || parser.Has(path);
  }
  absl::Status ErrorAtKey(const Parser& parser, absl::string_view path,
                          absl::string_view reason) const {
    return parser.ErrorAtKey(Key(parser, path), reason);
  }
};

// The roofline objective's model: the calibration file the config names, at
// the configured regime and the model's top-k.
absl::Status ResolveRoofline(const Parser& parser, const Scope& scope, PlannerConfig* config) {
  const bool roofline = config->plan.objective == planner::CraftObjective::kRoofline;
  if (!roofline) {
    if (!scope.Has(parser, "replan.roofline")) return absl::OkStatus();
    return scope.ErrorAtKey(parser, "replan.roofline",
                            "is read only with replan.objective: roofline");
  }
  if (!scope.Has(parser, "replan.roofline")) {
    return scope.ErrorAtKey(
        parser, "replan.objective",
        "roofline needs replan.roofline: {calibration: FILE, tokens_per_gpu: N}");
  }
  if (config->replan_method == ReplanMethod::kIncremental) {
    return scope.ErrorAtKey(
        parser, "replan.objective",
        "the incremental method's frontier counts tokens; roofline needs replan.method: fresh");
  }
  absl::StatusOr<planner::Calibration> calibration =
      planner::LoadCalibrationFile(scope.roofline_calibration);
  if (!calibration.ok()) {
    return scope.ErrorAtKey(parser, "replan.roofline.calibration", calibration.status().message());
  }
  config->plan.roofline.emplace(calibration->params,
                                planner::Regime{scope.roofline_tokens, config->model.top_k});
  return absl::OkStatus();
}

// Checks that need several keys at once, reported at the key that decides.
absl::Status CheckCombinations(const Parser& parser, const Scope& scope,
                               const PlannerConfig& config) {
  if (config.cluster.num_gpus % config.cluster.num_nodes != 0) {
    return scope.ErrorAtKey(
        parser, scope.Has(parser, "cluster.num_nodes") ? "cluster.num_nodes" : "cluster.num_gpus",
        absl::StrCat(config.cluster.num_gpus, " GPUs do not divide evenly over ",
                     config.cluster.num_nodes, " nodes"));
  }
  if (!config.security.nodes.empty() &&
      static_cast<int>(config.security.nodes.size()) != config.cluster.num_nodes) {
    return scope.ErrorAtKey(
        parser, scope.prefix.empty() ? "security.nodes" : "nodes",
        absl::StrCat(config.security.nodes.size(), " node names for ", config.cluster.num_nodes,
                     " nodes (cluster.num_nodes): name every node, in "
                     "rank order"));
  }
  if (config.model.top_k > config.model.num_experts) {
    return scope.ErrorAtKey(parser, "model.top_k",
                            absl::StrCat("top_k ", config.model.top_k, " exceeds num_experts ",
                                         config.model.num_experts));
  }
  const int64_t max_candidate =
      static_cast<int64_t>(config.model.num_experts) * (config.cluster.num_gpus - 1);
  for (int candidate : config.plan.candidates) {
    if (candidate > max_candidate) {
      return scope.ErrorAtKey(
          parser, "replan.candidates",
          absl::StrCat("candidate ", candidate, " exceeds num_experts x (num_gpus - 1) = ",
                       max_candidate, " (at most one replica per expert per GPU)"));
    }
  }
  if (config.plan.uniform) {
    if (config.plan.algorithm != planner::Algorithm::kCraft &&
        config.plan.algorithm != planner::Algorithm::kEplb) {
      return scope.ErrorAtKey(parser, "replan.uniform",
                              "uniform layouts are planned by craft (eplb's always are)");
    }
    const absl::StatusOr<int> redundant =
        planner::UniformRedundantPerLayer(config.model.num_experts, config.plan);
    if (!redundant.ok()) {
      return scope.ErrorAtKey(parser,
                              scope.Has(parser, "replan.redundant_per_layer")
                                  ? "replan.redundant_per_layer"
                                  : "replan.uniform",
                              redundant.status().message());
    }
  }
  if (config.replan_method == ReplanMethod::kIncremental && !config.plan.uniform &&
      !config.plan.budget.has_value()) {
    return scope.ErrorAtKey(parser, "replan.budget",
                            "the incremental method moves replicas within a fixed budget R; give "
                            "replan.budget a number or set replan.method: fresh");
  }
  if (config.plan.forbid_duplicates && config.plan.algorithm == planner::Algorithm::kEplb) {
    return scope.ErrorAtKey(parser, "replan.no_duplicates",
                            "eplb reproduces DeepSeek's algorithm exactly, which may put two "
                            "replicas of an expert on one GPU; no_duplicates needs none, craft "
                            "or craft-paper");
  }
  if (config.plan.memory.non_expert_bytes >= config.plan.memory.hbm_bytes) {
    return scope.ErrorAtKey(
        parser,
        scope.Has(parser, "replan.memory.non_expert_gb") ? "replan.memory.non_expert_gb"
                                                         : "replan.memory.hbm_gb",
        "non_expert_gb must be below hbm_gb (no memory would be left for experts and KV cache)");
  }
  return absl::OkStatus();
}

// The keys a placement group may set, at the root or in a `groups` entry:
// model, cluster, loads, replan and apply.
std::vector<Parser::Field> ScopedFields(Parser& parser, Scope* scope, PlannerConfig* config) {
  std::vector<Parser::Field> memory_fields = {
      {"hbm_gb", parser.ScaledField(&config->plan.memory.hbm_bytes, 1e9)},
      {"non_expert_gb", parser.ScaledField(&config->plan.memory.non_expert_bytes, 1e9)},
      {"expert_mb",
       [&parser, scope, config](const Value& value) {
         scope->memory_expert_mb_given = true;
         return parser.ScaledField(&config->plan.memory.bytes_per_expert, 1e6)(value);
       }},
      {"kv_bytes_per_token", parser.ScaledField(&config->plan.memory.kv_bytes_per_token, 1)},
  };
  return {
      {"model", parser.Section({
                    {"num_layers", parser.IntField(&config->model.num_layers, 1, 100'000), true},
                    {"num_experts", parser.IntField(&config->model.num_experts, 1, 100'000), true},
                    {"top_k", parser.IntField(&config->model.top_k, 1, 100'000), true},
                    {"bytes_per_expert",
                     parser.IntField(&config->model.bytes_per_expert, 1, int64_t{1} << 40), true},
                })},
      {"cluster", parser.Section({
                      {"num_gpus", parser.IntField(&config->cluster.num_gpus, 1, kMaxGpus), true},
                      {"num_nodes", parser.IntField(&config->cluster.num_nodes, 1, kMaxGpus)},
                  })},
      {"loads",
       parser.Section({
           {"window_horizon", parser.IntField(&config->window_horizon, 1, kMaxWindowHorizon)},
           {"max_clock_skew_s",
            parser.NonNegativeDurationField(&config->max_clock_skew, absl::Seconds(1), 86400)},
           {"decay", parser.OptionalDoubleField(&config->decay, 0, 1,
                                                /*min_exclusive=*/true)},
       })},
      {"replan",
       parser.Section({
           {"interval_s", parser.DurationField(&config->replan_interval, absl::Seconds(1), 86400)},
           {"algorithm",
            parser.NamedField(&config->plan.algorithm, &planner::ParseAlgorithm, "an algorithm")},
           {"method",
            parser.NamedField(&config->replan_method, &ParseReplanMethod, "incremental or fresh")},
           {"max_moved_fraction", parser.DoubleField(&config->max_moved_fraction, 0, 1)},
           {"max_step_gb", parser.ScaledField(&config->max_step_bytes, 1e9)},
           {"budget", parser.BudgetField(&config->plan.budget)},
           {"memory", parser.Section(std::move(memory_fields))},
           {"candidates", parser.IntListField(&config->plan.candidates)},
           {"no_duplicates", parser.BoolField(&config->plan.forbid_duplicates)},
           {"uniform", parser.BoolField(&config->plan.uniform)},
           {"redundant_per_layer",
            [&parser, config](const Value& value) {
              int redundant = 0;
              CRAFT_RETURN_IF_ERROR(parser.IntField(&redundant, 0, 100'000)(value));
              config->plan.redundant_per_layer = redundant;
              return absl::OkStatus();
            }},
           {"objective",
            parser.NamedField(&config->plan.objective, &planner::ParseObjective, "an objective")},
           {"roofline",
            parser.Section({
                {"calibration", parser.StringField(&scope->roofline_calibration), true},
                {"tokens_per_gpu",
                 parser.DoubleField(&scope->roofline_tokens, 0, 1e9, /*min_exclusive=*/true), true},
            })},
           {"gain_threshold", parser.DoubleField(&config->gain_threshold, 0, 1)},
           {"horizon_s", parser.DoubleField(&config->horizon_s, 0, 1e9)},
           {"transfer_gbps", parser.DoubleField(&config->transfer_gbps, 0, 1e6,
                                                /*min_exclusive=*/true)},
       })},
      {"apply", parser.Section({
                    {"timeout_ms",
                     parser.DurationField(&config->apply_timeout, absl::Milliseconds(1), 3.6e6)},
                })},
  };
}

// What a scope's keys imply once all are read, and its cross-key checks.
absl::Status FinishScope(const Parser& parser, const Scope& scope, PlannerConfig* config) {
  if (!scope.memory_expert_mb_given) {
    config->plan.memory.bytes_per_expert = static_cast<double>(config->model.bytes_per_expert);
  }
  config->plan.cluster = config->cluster;
  CRAFT_RETURN_IF_ERROR(ResolveRoofline(parser, scope, config));
  return CheckCombinations(parser, scope, *config);
}

// A group name ends up in metric labels, file names and etcd keys: a DNS
// label.
bool IsGroupName(absl::string_view name) {
  return !name.empty() && name.size() <= 63 && absl::ascii_isalnum(name.front()) &&
         absl::ascii_isalnum(name.back()) && std::all_of(name.begin(), name.end(), [](char c) {
           return (absl::ascii_isalnum(c) && !absl::ascii_isupper(c)) || c == '-';
         });
}

// `groups`: a sequence of mappings, each a copy of the root's config (before
// it was finished) with the entry's keys on top.
absl::Status ParseGroups(Parser& parser, const Value& groups, const Scope& root_scope,
                         const PlannerConfig& root, std::vector<PlacementGroup>* out) {
  if (!groups.node.IsSequence() || groups.node.size() == 0) {
    return parser.ErrorAt(groups, "expected a non-empty sequence of groups");
  }
  if (groups.node.size() > static_cast<size_t>(kMaxGroups)) {
    return parser.ErrorAt(
        groups, absl::StrCat(groups.node.size(), " groups; at most ", kMaxGroups, " per planner"));
  }
  std::map<std::string, std::string> node_group;  // node name -> its group
  std::map<std::string, const PlacementGroup*> family_first;
  for (size_t i = 0; i < groups.node.size(); ++i) {
    const Value entry{groups.node[i], groups.node[i].Mark(), absl::StrCat("groups[", i, "]")};
    PlacementGroup group;
    group.config = root;
    Scope scope = root_scope;
    scope.prefix = absl::StrCat(entry.path, ".");
    std::vector<Parser::Field> fields = ScopedFields(parser, &scope, &group.config);
    fields.push_back({"name", parser.StringField(&group.name), true});
    fields.push_back({"stats_family", parser.StringField(&group.stats_family)});
    fields.push_back({"nodes", parser.NameListField(&group.config.security.nodes, /*star=*/false)});
    CRAFT_RETURN_IF_ERROR(parser.ParseMapping(entry, fields));
    const std::string at = scope.prefix;
    if (!IsGroupName(group.name)) {
      return parser.ErrorAtKey(absl::StrCat(at, "name"),
                               absl::StrCat("'", group.name,
                                            "' is not a group name (1 to 63 lower-case letters, "
                                            "digits or '-', starting and ending alphanumeric)"));
    }
    for (const PlacementGroup& other : *out) {
      if (other.name == group.name) {
        return parser.ErrorAtKey(absl::StrCat(at, "name"),
                                 absl::StrCat("group '", group.name, "' is declared twice"));
      }
    }
    if (!parser.Has(absl::StrCat(at, "cluster"))) {
      return parser.ErrorAt(entry, "missing required key 'cluster' (each group has its own GPUs)");
    }
    if (!group.stats_family.empty() && !IsGroupName(group.stats_family)) {
      return parser.ErrorAtKey(absl::StrCat(at, "stats_family"),
                               absl::StrCat("'", group.stats_family, "' is not a family name"));
    }
    CRAFT_RETURN_IF_ERROR(FinishScope(parser, scope, &group.config));
    for (const std::string& node : group.config.security.nodes) {
      auto [it, inserted] = node_group.emplace(node, group.name);
      if (!inserted) {
        return parser.ErrorAtKey(scope.Key(parser, "nodes"),
                                 absl::StrCat("node '", node, "' is already in group '", it->second,
                                              "': a node's agent serves one group"));
      }
    }
    out->push_back(std::move(group));
  }
  // Pooled windows are summed per layer and expert: one family, one shape.
  for (size_t i = 0; i < out->size(); ++i) {
    const PlacementGroup& group = (*out)[i];
    if (group.stats_family.empty()) continue;
    auto [it, first] = family_first.emplace(group.stats_family, &group);
    const ModelShape& a = it->second->config.model;
    const ModelShape& b = group.config.model;
    if (!first && (a.num_layers != b.num_layers || a.num_experts != b.num_experts)) {
      return parser.ErrorAtKey(
          absl::StrCat("groups[", i, "].stats_family"),
          absl::StrCat("group '", group.name, "' (", b.num_layers, " layers x ", b.num_experts,
                       " experts) cannot pool loads with group '", it->second->name, "' (",
                       a.num_layers, " x ", a.num_experts, ") in family '", group.stats_family,
                       "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PlannerConfig> ParseConfig(absl::string_view yaml_text,
                                          absl::string_view file_name) {
  Parser parser(file_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return parser.ErrorAt(e.mark, absl::StrCat("invalid YAML: ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) {
    return parser.ErrorAt(YAML::Mark(), "the config is empty; 'model' and 'cluster' are required");
  }

  PlannerConfig config;
  Scope scope;
  std::optional<Value> groups;  // parsed once the root's keys are all read
  std::vector<Parser::Field> fields = ScopedFields(parser, &scope, &config);
  std::vector<Parser::Field> global_fields = {
      {"listen_address", parser.ListenAddressField(&config.listen_address)},
      {"state_path", parser.StringField(&config.state_path)},
      {"admin_token",
       parser.MovedField("security.admin_token_file (a token on the command line or in a "
                         "config file is easy to leak)")},
      {"security", parser.Section({
                       {"nodes", parser.NameListField(&config.security.nodes, /*star=*/false)},
                       {"admins", parser.NameListField(&config.security.admins, /*star=*/false)},
                       {"readers", parser.NameListField(&config.security.readers, /*star=*/true)},
                       {"admin_token_file", parser.StringField(&config.security.admin_token_file)},
                   })},
      {"limits", parser.Section({
                     {"max_concurrent_plans", parser.IntField(&config.max_concurrent_plans, 1, 64)},
                     {"max_plan_work", parser.IntField(&config.max_plan_work, 1,
                                                       std::numeric_limits<int64_t>::max())},
                 })},
      {"ha",
       parser.Section({
           {"etcd_endpoints",
            [&](const Value& value) -> absl::Status {
              if (!value.node.IsSequence() || value.node.size() == 0) {
                return parser.ErrorAt(value, "expected a non-empty sequence of host:port");
              }
              config.ha.etcd_endpoints.clear();
              for (size_t i = 0; i < value.node.size(); ++i) {
                const Value item{value.node[i], value.node[i].Mark(),
                                 absl::StrCat(value.path, "[", i, "]")};
                std::string endpoint;
                CRAFT_RETURN_IF_ERROR(parser.ListenAddressField(&endpoint)(item));
                config.ha.etcd_endpoints.push_back(std::move(endpoint));
              }
              return absl::OkStatus();
            },
            true},
           {"prefix",
            [&](const Value& value) -> absl::Status {
              CRAFT_RETURN_IF_ERROR(parser.StringField(&config.ha.prefix)(value));
              const std::string& prefix = config.ha.prefix;
              const bool printable = std::all_of(prefix.begin(), prefix.end(), [](char c) {
                return c > ' ' && c < 127;
              });
              if (prefix.size() < 2 || prefix.size() > 128 || prefix[0] != '/' ||
                  prefix.back() == '/' || !printable) {
                return parser.ErrorAt(value, absl::StrCat("expected a key prefix like /craft/prod "
                                                          "(2 to 128 printable bytes, a leading "
                                                          "'/', no trailing '/'), got '",
                                                          prefix, "'"));
              }
              return absl::OkStatus();
            }},
           {"lease_ttl_s",
            [&](const Value& value) -> absl::Status {
              int seconds = 0;
              CRAFT_RETURN_IF_ERROR(parser.IntField(&seconds, 1, 300)(value));
              config.ha.lease_ttl = absl::Seconds(seconds);
              return absl::OkStatus();
            }},
           {"etcd_timeout_ms",
            parser.DurationField(&config.ha.etcd_timeout, absl::Milliseconds(1), 60'000)},
           {"etcd_insecure", parser.BoolField(&config.ha.etcd_insecure)},
           {"etcd_cert", parser.StringField(&config.ha.etcd_cert_file)},
           {"etcd_key", parser.StringField(&config.ha.etcd_key_file)},
           {"etcd_ca", parser.StringField(&config.ha.etcd_ca_file)},
           {"etcd_server_name", parser.StringField(&config.ha.etcd_server_name)},
       })},
      {"groups",
       [&](const Value& value) {
         groups = value;
         return absl::OkStatus();
       }},
  };
  for (Parser::Field& field : global_fields) fields.push_back(std::move(field));
  config.plan.budget = 8;  // the default R when replan.budget is absent
  try {
    CRAFT_RETURN_IF_ERROR(parser.ParseMapping(Value{root, root.Mark(), ""}, fields));
    // The root's model is every group's unless a group gives its own; its
    // cluster is required only without groups (each group has its own).
    for (absl::string_view key : {"model", "cluster"}) {
      if (!parser.Has(key) && (key == "model" || !groups.has_value())) {
        return parser.ErrorAt(root.Mark(), absl::StrCat("missing required key '", key, "'"));
      }
    }
    const HaConfig& ha = config.ha;
    if (ha.enabled() && !ha.etcd_insecure &&
        (ha.etcd_cert_file.empty() || ha.etcd_key_file.empty() || ha.etcd_ca_file.empty())) {
      return parser.ErrorAtKey("ha",
                               "etcd_cert, etcd_key and etcd_ca are required (mutual TLS with "
                               "etcd), or etcd_insecure: true for a demo");
    }
    if (!groups.has_value()) {
      CRAFT_RETURN_IF_ERROR(FinishScope(parser, scope, &config));
      return config;
    }
    if (parser.Has("security.nodes")) {
      return parser.ErrorAtKey("security.nodes", "with groups, each group names its nodes");
    }
    std::vector<PlacementGroup> parsed;
    CRAFT_RETURN_IF_ERROR(ParseGroups(parser, *groups, scope, config, &parsed));
    config.groups = std::move(parsed);
  } catch (const YAML::Exception& e) {
    return parser.ErrorAt(e.mark, e.msg);
  }
  return config;
}

absl::StatusOr<PlannerConfig> LoadConfigFile(const std::string& path) {
  // A planner config is a few KiB; anything past 16 MiB is the wrong file,
  // refused before the YAML parser spends memory on it.
  constexpr int64_t kMaxConfigBytes = 16 << 20;
  absl::StatusOr<std::string> text = ReadFileToString(path, kMaxConfigBytes);
  if (!text.ok()) {
    const absl::Status& status = text.status();
    if (absl::IsResourceExhausted(status)) {
      return absl::ResourceExhaustedError(absl::StrCat("config file ", status.message()));
    }
    if (absl::IsDataLoss(status)) {
      return absl::DataLossError(absl::StrCat("cannot read config file '", path, "'"));
    }
    return absl::NotFoundError(absl::StrCat("cannot open config file '", path, "'"));
  }
  return ParseConfig(*text, path);
}

}  // namespace craft::server
