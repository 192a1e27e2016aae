// Reading and writing expert-load traces as JSON (formats in FORMATS.md).
//
//   absl::StatusOr<LoadTrace> trace = ParseTraceJson(text);  // caller reads the file
//   std::string json = TraceToJson(*trace, /*top_k=*/8);
//
// Pure string in, string out: no file access, so callers decide where traces
// live and tests need no filesystem. Both functions are thread-compatible
// (no shared state).
#ifndef CRAFT_PLANNER_IO_TRACE_JSON_H_
#define CRAFT_PLANNER_IO_TRACE_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "planner/load_trace.h"

namespace craft::planner {

// The format name TraceToJson() writes.
inline constexpr char kTraceFormatV1[] = "craft.trace.v1";

// Limits on what ParseTraceJson() accepts. Larger inputs are almost surely
// corrupt, and the limits keep a small malicious file from claiming a huge
// allocation.
inline constexpr int kMaxTraceLayers = 1 << 16;
inline constexpr int kMaxTraceExperts = 1 << 16;
inline constexpr int64_t kMaxTraceCells = int64_t{1} << 28;  // L x E x (windows + 1)
// Counts must be exactly representable as doubles, which JSON tools use.
inline constexpr int64_t kMaxTraceCount = int64_t{1} << 53;

// Parses either
//  (a) an aggregate-count file, {"num_layers": L, "num_experts": E,
//      "counts": [[E numbers] x L], ...}, as SGLang's expert distribution
//      recorder dumps (other keys, such as "src", are ignored), or
//  (b) craft's own trace, {"format": "craft.trace.v1", ...}, with optional
//      per-window samples "windows" and an optional aggregate "counts" (the
//      sum of the windows when absent, used as given when present).
// Fractional counts (recorders may average) are rounded to the nearest
// integer. Every failure is INVALID_ARGUMENT naming the offending element.
// "top_k" in format (b) is checked (1 <= top_k <= E) but LoadTrace has no
// place for it, so it is dropped.
//
// Well-formed traces whose header comes before the counts (as every writer
// puts it) are read in one pass with no DOM: a 58 x 256 x 100 trace in about
// a fifth of the time nlohmann's DOM takes. Anything else, and every error,
// goes through the reference reader below, so the messages are its own.
absl::StatusOr<LoadTrace> ParseTraceJson(absl::string_view text);

// Writes `trace` in format (b): its windows when it has any, and always its
// aggregate as "counts". `top_k` is recorded when positive (pass 0 when
// unknown). The trace must have at least one layer and expert to be readable
// back.
std::string TraceToJson(const LoadTrace& trace, int top_k);

namespace io_internal {

// ParseTraceJson() without its fast path (trace_json_fast.h): nlohmann's DOM,
// every check in order, and the error messages FORMATS.md documents.
// ParseTraceJson() returns its answer for any input the fast path does not
// accept; the fuzz target compares the two on everything else.
absl::StatusOr<LoadTrace> ParseTraceJsonReference(absl::string_view text);

}  // namespace io_internal

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_IO_TRACE_JSON_H_
