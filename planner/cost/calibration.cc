#include "planner/cost/calibration.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace craft::planner {
namespace {

// Reads one document, every error at file:line:column with the dotted key.
class Reader {
 public:
  explicit Reader(absl::string_view file_name) : file_name_(file_name) {}

  absl::Status ErrorAt(const YAML::Mark& mark, absl::string_view reason) const {
    return absl::InvalidArgumentError(absl::StrCat(file_name_, ":", std::max(mark.line, 0) + 1, ":",
                                                   std::max(mark.column, 0) + 1, ": ", reason));
  }

  // Calls `read` for each key of the mapping `node` (at `path`), after
  // checking each key is one of `keys` and appears once, and that every key
  // of `required` is there.
  absl::Status Mapping(
      const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
      const std::vector<std::string>& keys, const std::set<std::string>& required,
      const std::function<absl::Status(const std::string& key, const YAML::Node& value,
                                       const YAML::Mark& mark)>& read) const {
    const std::string where = path.empty() ? "the document" : path;
    if (!node.IsMap()) return ErrorAt(mark, absl::StrCat(where, " must be a mapping"));
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar()) return ErrorAt(it->first.Mark(), "keys must be plain names");
      const std::string key = it->first.Scalar();
      const std::string full = path.empty() ? key : absl::StrCat(path, ".", key);
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        return ErrorAt(it->first.Mark(), absl::StrCat("unknown key '", full, "' (expected one of: ",
                                                      absl::StrJoin(keys, ", "), ")"));
      }
      if (!seen.insert(key).second) {
        return ErrorAt(it->first.Mark(), absl::StrCat("duplicate key '", full, "'"));
      }
      const YAML::Mark value_mark =
          it->second.Mark().line >= 0 ? it->second.Mark() : it->first.Mark();
      CRAFT_RETURN_IF_ERROR(read(key, it->second, value_mark));
    }
    for (const std::string& key : required) {
      if (seen.count(key) == 0) {
        return ErrorAt(mark, absl::StrCat("missing required key '",
                                          path.empty() ? key : absl::StrCat(path, ".", key), "'"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Scalar(const YAML::Node& node, const YAML::Mark& mark,
                                     absl::string_view path, absl::string_view expected) const {
    if (!node.IsScalar()) {
      return ErrorAt(mark, absl::StrCat(path, ": expected ", expected));
    }
    return node.Scalar();
  }

  absl::StatusOr<int64_t> PositiveInt(const YAML::Node& node, const YAML::Mark& mark,
                                      absl::string_view path) const {
    CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(node, mark, path, "an integer"));
    int64_t value = 0;
    if (!absl::SimpleAtoi(text, &value) || value <= 0) {
      return ErrorAt(mark, absl::StrCat(path, ": expected an integer > 0, got '", text, "'"));
    }
    return value;
  }

  // model.curve: a sequence of [tokens, us] pairs, each checked at its line.
  absl::Status Curve(const YAML::Node& node, const YAML::Mark& mark,
                     std::vector<CurvePoint>* curve) const {
    if (!node.IsSequence())
      return ErrorAt(mark, "model.curve: expected a sequence of [tokens, us]");
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node point = node[i];
      const YAML::Mark at = point.Mark().line >= 0 ? point.Mark() : mark;
      const std::string path = absl::StrCat("model.curve[", i, "]");
      if (!point.IsSequence() || point.size() != 2) {
        return ErrorAt(at, absl::StrCat(path, ": expected [tokens, us]"));
      }
      CurvePoint p;
      CRAFT_ASSIGN_OR_RETURN(p.tokens, NonNegative(point[0], at, path));
      CRAFT_ASSIGN_OR_RETURN(p.us, NonNegative(point[1], at, path));
      curve->push_back(p);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<double> NonNegative(const YAML::Node& node, const YAML::Mark& mark,
                                     absl::string_view path) const {
    CRAFT_ASSIGN_OR_RETURN(std::string text, Scalar(node, mark, path, "a number"));
    double value = 0;
    if (!absl::SimpleAtod(text, &value)) {
      return ErrorAt(mark, absl::StrCat(path, ": expected a number, got '", text, "'"));
    }
    if (!std::isfinite(value) || value < 0) {
      return ErrorAt(mark, absl::StrCat(path, ": expected a finite number >= 0, got '", text, "'"));
    }
    return value;
  }

 private:
  std::string file_name_;
};

}  // namespace

absl::StatusOr<Calibration> ParseCalibration(absl::string_view yaml_text,
                                             absl::string_view file_name) {
  Reader reader(file_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return reader.ErrorAt(e.mark, e.msg);
  }
  Calibration calibration;
  RooflineParams& params = calibration.params;
  CRAFT_RETURN_IF_ERROR(reader.Mapping(
      root, root.Mark(), "", {"version", "gpu", "expert", "model"},
      {"version", "gpu", "expert", "model"},
      [&](const std::string& key, const YAML::Node& value, const YAML::Mark& mark) -> absl::Status {
        if (key == "version") {
          CRAFT_ASSIGN_OR_RETURN(int64_t version, reader.PositiveInt(value, mark, key));
          if (version != kCalibrationVersion) {
            return reader.ErrorAt(
                mark, absl::StrCat("version: unknown version ", version, " (this build reads ",
                                   kCalibrationVersion, ")"));
          }
          return absl::OkStatus();
        }
        if (key == "gpu") {
          CRAFT_ASSIGN_OR_RETURN(calibration.gpu, reader.Scalar(value, mark, key, "a name"));
          if (calibration.gpu.empty()) return reader.ErrorAt(mark, "gpu: must not be empty");
          return absl::OkStatus();
        }
        if (key == "expert") {
          return reader.Mapping(
              value, mark, key, {"hidden", "intermediate", "dtype"},
              {"hidden", "intermediate", "dtype"},
              [&](const std::string& k, const YAML::Node& v, const YAML::Mark& m) -> absl::Status {
                const std::string path = absl::StrCat("expert.", k);
                if (k == "dtype") {
                  CRAFT_ASSIGN_OR_RETURN(calibration.dtype, reader.Scalar(v, m, path, "a dtype"));
                  if (calibration.dtype != "bf16") {
                    return reader.ErrorAt(m, absl::StrCat(path, ": only bf16 is calibrated, got '",
                                                          calibration.dtype, "'"));
                  }
                  return absl::OkStatus();
                }
                CRAFT_ASSIGN_OR_RETURN(int64_t dim, reader.PositiveInt(v, m, path));
                (k == "hidden" ? calibration.hidden : calibration.intermediate) = dim;
                return absl::OkStatus();
              });
        }
        const std::map<std::string, double*> fields = {
            {"fixed_us", &params.fixed_us},
            {"per_token_us", &params.per_token_us},
            {"knee_sharpness", &params.knee_sharpness},
            {"gpu_fixed_us", &params.gpu_fixed_us},
            {"dispatch_us_per_token", &params.dispatch_us_per_token}};
        std::vector<std::string> names;
        for (const auto& [name, unused] : fields) names.push_back(name);
        names.push_back("curve");
        CRAFT_RETURN_IF_ERROR(reader.Mapping(
            value, mark, key, names, {"fixed_us", "per_token_us"},
            [&](const std::string& k, const YAML::Node& v, const YAML::Mark& m) -> absl::Status {
              if (k == "curve") return reader.Curve(v, m, &params.curve);
              CRAFT_ASSIGN_OR_RETURN(*fields.at(k),
                                     reader.NonNegative(v, m, absl::StrCat("model.", k)));
              return absl::OkStatus();
            }));
        const absl::Status valid = params.Validate();
        if (!valid.ok()) return reader.ErrorAt(mark, absl::StrCat("model: ", valid.message()));
        return absl::OkStatus();
      }));
  return calibration;
}

absl::StatusOr<Calibration> LoadCalibrationFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open calibration file '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseCalibration(text.str(), path);
}

std::string FormatCalibration(const Calibration& calibration, absl::string_view header) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(header, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "# ", line, "\n");
  }
  const RooflineParams& p = calibration.params;
  absl::StrAppendFormat(&out,
                        "version: %d\n"
                        "gpu: \"%s\"\n"
                        "expert:\n"
                        "  hidden: %d\n"
                        "  intermediate: %d\n"
                        "  dtype: %s\n"
                        "model:\n"
                        "  fixed_us: %.4f\n"
                        "  per_token_us: %.6f\n"
                        "  knee_sharpness: %g\n"
                        "  gpu_fixed_us: %.4f\n"
                        "  dispatch_us_per_token: %.6f\n",
                        kCalibrationVersion, calibration.gpu, calibration.hidden,
                        calibration.intermediate, calibration.dtype, p.fixed_us, p.per_token_us,
                        p.knee_sharpness, p.gpu_fixed_us, p.dispatch_us_per_token);
  if (!p.curve.empty()) {
    absl::StrAppend(&out, "  curve:  # measured [tokens, us], interpolated by the model\n");
    for (const CurvePoint& point : p.curve) {
      absl::StrAppendFormat(&out, "    - [%g, %.3f]\n", point.tokens, point.us);
    }
  }
  return out;
}

}  // namespace craft::planner
