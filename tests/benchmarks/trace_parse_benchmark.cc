// Trace reading speed on the DeepSeek shape (58 MoE layers x 256 experts, 100
// windows: 1.5 million counts, a 5.6 MB craft.trace.v1 file as craftctl synth
// writes it), what `craftctl plan --loads` reads. ParseTraceJson is what
// every caller gets (the one-pass reader, trace_json_fast.h); Reference is
// the nlohmann reader that explains bad input, and what ParseTraceJson cost
// before the one-pass reader.
//
//   bazel run -c opt //tests/benchmarks:trace_parse_benchmark
#include <string>

#include "benchmark/benchmark.h"
#include "planner/io/trace_json.h"
#include "planner/synth/synth.h"

namespace craft::planner {
namespace {

// craftctl synth's default trace at the DeepSeek shape, as TraceToJson writes it.
const std::string& DeepSeekTraceJson() {
  static const std::string* const text = [] {
    SynthOptions options;
    options.num_layers = 58;
    options.num_experts = 256;
    options.num_windows = 100;
    return new std::string(TraceToJson(SynthesizeTrace(options).value(), options.top_k));
  }();
  return *text;
}

void BM_ParseTraceJson(benchmark::State& state) {
  const std::string& text = DeepSeekTraceJson();
  for (auto _ : state) benchmark::DoNotOptimize(ParseTraceJson(text).value());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_ParseTraceJson)->Unit(benchmark::kMillisecond);

void BM_ParseTraceJsonReference(benchmark::State& state) {
  const std::string& text = DeepSeekTraceJson();
  for (auto _ : state) benchmark::DoNotOptimize(io_internal::ParseTraceJsonReference(text).value());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_ParseTraceJsonReference)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace craft::planner

BENCHMARK_MAIN();
