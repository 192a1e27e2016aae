#include "planner/io/trace_json.h"

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "planner/io/internal/json_util.h"
#include "planner/io/trace_json_fast.h"

namespace craft::planner {
namespace {

using io_internal::Json;

// One token count: a non-negative number no larger than kMaxTraceCount,
// rounded to the nearest integer. Errors continue the element's path.
absl::StatusOr<int64_t> ToCount(const Json& node) {
  if (!node.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be a number, got ", io_internal::Describe(node)));
  }
  const double value = node.get<double>();
  // nlohmann rejects NaN and overflowing literals while parsing; the check
  // stays so this function is safe on any Json value.
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError("must be a finite number");
  }
  if (value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("is ", io_internal::Describe(node), "; counts must be non-negative"));
  }
  // Integers are compared exactly: 2^53 + 1 is not representable as double.
  const bool too_large = node.is_number_unsigned()  ? node.get<uint64_t>() > kMaxTraceCount
                         : node.is_number_integer() ? node.get<int64_t>() > kMaxTraceCount
                                                    : value > static_cast<double>(kMaxTraceCount);
  if (too_large) {
    return absl::InvalidArgumentError(
        absl::StrCat("is ", io_internal::Describe(node), "; counts must not exceed 2^53"));
  }
  return node.is_number_integer() ? node.get<int64_t>() : std::llround(value);
}

// Checks that `node` is an array of `num_layers` arrays of `num_experts`
// entries. Run on every matrix before anything is allocated, so a file's
// declared shape cannot make the parser allocate more than the file holds.
absl::Status CheckMatrixShape(const Json& node, absl::string_view path, int num_layers,
                              int num_experts) {
  CRAFT_RETURN_IF_ERROR(io_internal::CheckArray(node, path, num_layers));
  for (int l = 0; l < num_layers; ++l) {
    CRAFT_RETURN_IF_ERROR(
        io_internal::CheckArray(node[l], absl::StrCat(path, "[", l, "]"), num_experts));
  }
  return absl::OkStatus();
}

// Reads the counts of a matrix that passed CheckMatrixShape(), layer `l` into
// `row(l)`. The path is only formatted on error: windows can hold millions of
// cells.
absl::Status ReadMatrix(const Json& node, absl::string_view path,
                        absl::FunctionRef<absl::Span<int64_t>(int)> row) {
  for (size_t l = 0; l < node.size(); ++l) {
    const absl::Span<int64_t> out = row(static_cast<int>(l));
    for (size_t e = 0; e < out.size(); ++e) {
      absl::StatusOr<int64_t> count = ToCount(node[l][e]);
      if (!count.ok()) {
        return io_internal::AtPath(absl::StrCat(path, "[", l, "][", e, "]"), count.status());
      }
      out[e] = *count;
    }
  }
  return absl::OkStatus();
}

// Sets the aggregate to the sum of the windows, failing rather than
// overflowing when a sum leaves the exactly representable range.
absl::Status SumWindows(LoadTrace& trace) {
  for (int l = 0; l < trace.num_layers(); ++l) {
    const absl::Span<int64_t> total = trace.mutable_aggregate(l);
    for (int b = 0; b < trace.num_windows(); ++b) {
      const absl::Span<const int64_t> window = trace.window(b, l);
      for (int e = 0; e < trace.num_experts(); ++e) {
        // Both terms are <= 2^53 here, so the addition cannot overflow.
        total[e] += window[e];
        if (total[e] > kMaxTraceCount) {
          return absl::InvalidArgumentError(absl::StrCat("the windows' counts for layer ", l,
                                                         " expert ", e, " sum to more than 2^53"));
        }
      }
    }
  }
  return absl::OkStatus();
}

// True for format (b), false for format (a) (no "format" key).
absl::StatusOr<bool> IsCraftFormat(const Json& root) {
  const Json* format = io_internal::FindMember(root, "format");
  if (format == nullptr) return false;
  CRAFT_ASSIGN_OR_RETURN(const std::string name, io_internal::ReadString(*format, "\"format\""));
  if (name != kTraceFormatV1) {
    return absl::InvalidArgumentError(absl::StrCat("unknown trace format \"", name,
                                                   "\"; expected \"", kTraceFormatV1,
                                                   "\" or no \"format\" key (aggregate counts)"));
  }
  return true;
}

// The matrices a trace file holds, located and shape-checked.
struct TraceMatrices {
  int num_layers = 0;
  int num_experts = 0;
  const Json* counts = nullptr;  // null: sum the windows
  std::vector<const Json*> windows;
};

// Checks the matrices' shapes and the cell limit (before anything is allocated).
absl::Status CheckSize(const TraceMatrices& m) {
  const int64_t cells = int64_t{m.num_layers} * m.num_experts * (int64_t{1} + m.windows.size());
  if (cells > kMaxTraceCells) {
    return absl::InvalidArgumentError(absl::StrCat(
        m.num_layers, " layers x ", m.num_experts, " experts x ", m.windows.size(), " windows is ",
        cells, " cells with the aggregate, over the limit of ", kMaxTraceCells));
  }
  if (m.counts != nullptr) {
    CRAFT_RETURN_IF_ERROR(CheckMatrixShape(*m.counts, "counts", m.num_layers, m.num_experts));
  }
  for (size_t b = 0; b < m.windows.size(); ++b) {
    CRAFT_RETURN_IF_ERROR(CheckMatrixShape(*m.windows[b], absl::StrCat("windows[", b, "]"),
                                           m.num_layers, m.num_experts));
  }
  return absl::OkStatus();
}

absl::StatusOr<TraceMatrices> LocateMatrices(const Json& root) {
  CRAFT_ASSIGN_OR_RETURN(const bool craft_format, IsCraftFormat(root));
  TraceMatrices m;
  CRAFT_ASSIGN_OR_RETURN(m.num_layers,
                         io_internal::ReadIntMember(root, "num_layers", 1, kMaxTraceLayers));
  CRAFT_ASSIGN_OR_RETURN(m.num_experts,
                         io_internal::ReadIntMember(root, "num_experts", 1, kMaxTraceExperts));
  if (craft_format && io_internal::FindMember(root, "top_k") != nullptr) {
    CRAFT_RETURN_IF_ERROR(io_internal::ReadIntMember(root, "top_k", 1, m.num_experts).status());
  }
  const Json* windows = io_internal::FindMember(root, "windows");
  if (windows != nullptr && !craft_format) {
    // Ignoring them would silently drop the samples a replay needs.
    return absl::InvalidArgumentError(
        absl::StrCat("\"windows\" need \"format\": \"", kTraceFormatV1, "\""));
  }
  if (windows != nullptr) {
    CRAFT_RETURN_IF_ERROR(io_internal::CheckArray(*windows, "\"windows\"", std::nullopt));
    for (const Json& window : *windows) m.windows.push_back(&window);
  }
  m.counts = io_internal::FindMember(root, "counts");
  if (m.counts == nullptr && m.windows.empty()) {
    return absl::InvalidArgumentError(craft_format ? "a craft trace needs \"windows\" or \"counts\""
                                                   : "missing key \"counts\"");
  }
  CRAFT_RETURN_IF_ERROR(CheckSize(m));
  return m;
}

// A JSON array of `num_layers` rows.
nlohmann::ordered_json MatrixToJson(int num_layers,
                                    absl::FunctionRef<absl::Span<const int64_t>(int)> row) {
  nlohmann::ordered_json matrix = nlohmann::ordered_json::array();
  for (int l = 0; l < num_layers; ++l) {
    const absl::Span<const int64_t> values = row(l);
    matrix.push_back(std::vector<int64_t>(values.begin(), values.end()));
  }
  return matrix;
}

}  // namespace

absl::StatusOr<LoadTrace> ParseTraceJson(absl::string_view text) {
  std::optional<io_internal::FastTrace> fast = io_internal::ReadTraceFast(text);
  if (!fast.has_value()) return io_internal::ParseTraceJsonReference(text);
  if (!fast->has_counts) CRAFT_RETURN_IF_ERROR(SumWindows(fast->trace));
  return std::move(fast->trace);
}

namespace io_internal {

absl::StatusOr<LoadTrace> ParseTraceJsonReference(absl::string_view text) {
  CRAFT_ASSIGN_OR_RETURN(const Json root, io_internal::ParseJsonObject(text));
  CRAFT_ASSIGN_OR_RETURN(const TraceMatrices m, LocateMatrices(root));
  LoadTrace trace(m.num_layers, m.num_experts, static_cast<int>(m.windows.size()));
  for (int b = 0; b < trace.num_windows(); ++b) {
    CRAFT_RETURN_IF_ERROR(ReadMatrix(*m.windows[b], absl::StrCat("windows[", b, "]"),
                                     [&](int l) { return trace.mutable_window(b, l); }));
  }
  if (m.counts != nullptr) {
    CRAFT_RETURN_IF_ERROR(
        ReadMatrix(*m.counts, "counts", [&](int l) { return trace.mutable_aggregate(l); }));
  } else {
    CRAFT_RETURN_IF_ERROR(SumWindows(trace));
  }
  return trace;
}

}  // namespace io_internal

std::string TraceToJson(const LoadTrace& trace, int top_k) {
  // ordered_json keeps the header first, where a reader looks for it.
  nlohmann::ordered_json json;
  json["format"] = kTraceFormatV1;
  json["num_layers"] = trace.num_layers();
  json["num_experts"] = trace.num_experts();
  if (top_k > 0) json["top_k"] = top_k;
  json["counts"] = MatrixToJson(trace.num_layers(), [&](int l) { return trace.aggregate(l); });
  if (trace.num_windows() > 0) {
    nlohmann::ordered_json windows = nlohmann::ordered_json::array();
    for (int b = 0; b < trace.num_windows(); ++b) {
      windows.push_back(
          MatrixToJson(trace.num_layers(), [&](int l) { return trace.window(b, l); }));
    }
    json["windows"] = std::move(windows);
  }
  return json.dump();
}

}  // namespace craft::planner
