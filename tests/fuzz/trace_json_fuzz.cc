// Fuzzes the load-trace JSON reader (planner/io/trace_json.cc): SGLang's
// aggregate counts and craft's own traces with per-window samples. Input:
// JSON text.
//
// Every refusal is INVALID_ARGUMENT; every accepted trace is valid, within
// the reader's limits, and reads back the same after TraceToJson. The reader
// takes a fast path where it can (trace_json_fast.cc): its answer must be the
// nlohmann reference reader's, the same trace or the same refusal, on every
// input.
#include <string>

#include "absl/strings/string_view.h"
#include "planner/io/trace_json.h"
#include "planner/load_trace.h"
#include "tests/fuzz/fuzz_target.h"

namespace craft::fuzz {
namespace {

bool SameTrace(const planner::LoadTrace& a, const planner::LoadTrace& b) {
  if (a.num_layers() != b.num_layers() || a.num_experts() != b.num_experts() ||
      a.num_windows() != b.num_windows()) {
    return false;
  }
  for (int l = 0; l < a.num_layers(); ++l) {
    if (a.aggregate(l) != b.aggregate(l)) return false;
    for (int w = 0; w < a.num_windows(); ++w) {
      if (a.window(w, l) != b.window(w, l)) return false;
    }
  }
  return true;
}

void CheckAccepted(const planner::LoadTrace& trace) {
  CRAFT_FUZZ_CHECK(trace.Validate().ok()) << trace.Validate();
  CRAFT_FUZZ_CHECK(trace.num_layers() <= planner::kMaxTraceLayers &&
                   trace.num_experts() <= planner::kMaxTraceExperts &&
                   int64_t{trace.num_layers()} * trace.num_experts() * (trace.num_windows() + 1) <=
                       planner::kMaxTraceCells)
      << trace.num_layers() << " x " << trace.num_experts() << " x " << trace.num_windows();
  for (int l = 0; l < trace.num_layers(); ++l) {
    for (int64_t count : trace.aggregate(l)) {
      CRAFT_FUZZ_CHECK(count <= planner::kMaxTraceCount) << "count " << count;
    }
  }
  const std::string written = planner::TraceToJson(trace, /*top_k=*/0);
  const absl::StatusOr<planner::LoadTrace> reread = planner::ParseTraceJson(written);
  CRAFT_FUZZ_CHECK(reread.ok()) << "TraceToJson wrote what the reader refuses: " << reread.status();
  CRAFT_FUZZ_CHECK(SameTrace(trace, *reread)) << "the trace does not read back the same";
}

}  // namespace

const google::protobuf::Message* InputMessage() { return nullptr; }

}  // namespace craft::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<craft::planner::LoadTrace> trace = craft::planner::ParseTraceJson(text);
  const absl::StatusOr<craft::planner::LoadTrace> reference =
      craft::planner::io_internal::ParseTraceJsonReference(text);
  if (trace.ok()) {
    CRAFT_FUZZ_CHECK(reference.ok())
        << "the fast path accepts what the reference refuses: " << reference.status();
    CRAFT_FUZZ_CHECK(craft::fuzz::SameTrace(*trace, *reference))
        << "the fast path reads other counts than the reference";
    craft::fuzz::CheckAccepted(*trace);
  } else {
    CRAFT_FUZZ_CHECK(absl::IsInvalidArgument(trace.status())) << trace.status();
    CRAFT_FUZZ_CHECK(trace.status() == reference.status())
        << "refused with " << trace.status() << ", the reference says " << reference.status();
  }
  return 0;
}
