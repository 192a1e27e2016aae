// ParseTraceJson()'s fast path: a single pass over the text that writes the
// counts straight into the LoadTrace, with no DOM in between (nlohmann's DOM
// of a 58 x 256 x 100 trace is 1.5 million nodes, and building, reading and
// freeing it was most of the reference reader's time).
//
//   std::optional<FastTrace> fast = ReadTraceFast(text);
//   if (!fast.has_value()) return ParseTraceJsonReference(text);  // explains
//
// It only tells a trace it accepts from one it does not: every rejection is
// left to the reference reader (trace_json.cc), whose messages FORMATS.md
// documents, so there is one source of error text and the fast path cannot
// drift from it. The cost is a second parse of bad input only.
//
// Internal to planner/io. Thread-compatible: no shared state.
#ifndef CRAFT_PLANNER_IO_TRACE_JSON_FAST_H_
#define CRAFT_PLANNER_IO_TRACE_JSON_FAST_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "planner/load_trace.h"

namespace craft::planner::io_internal {

// A trace as ReadTraceFast() read it.
struct FastTrace {
  LoadTrace trace;
  // False when the file has no "counts": the aggregate is still zero and the
  // caller sums the windows, refusing sums over 2^53 as the reference does.
  bool has_counts = false;
};

// The trace in `text` when the reference reader would accept it, with the
// same values; nullopt when it would refuse it, and for what the fast path
// leaves to it: strings with escapes or non-ASCII bytes (UTF-8 and surrogate
// rules), "num_layers" or "num_experts" after the matrices, a repeated key
// that it reads, ignored values nested over 64 deep, and numbers whose
// reading differs by type (long integer literals, floats that underflow).
std::optional<FastTrace> ReadTraceFast(absl::string_view text);

}  // namespace craft::planner::io_internal

#endif  // CRAFT_PLANNER_IO_TRACE_JSON_FAST_H_
