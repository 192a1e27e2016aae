// Tests of trace JSON parsing and writing: both input formats, round trips and
// every rejection path.
#include "planner/io/trace_json.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/load_trace.h"

namespace craft::planner {
namespace {

using ::testing::HasSubstr;

// Expects `text` to be rejected with INVALID_ARGUMENT mentioning `detail`.
void ExpectRejected(const std::string& text, const std::string& detail) {
  const absl::StatusOr<LoadTrace> trace = ParseTraceJson(text);
  ASSERT_FALSE(trace.ok()) << "accepted: " << text;
  EXPECT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trace.status().message()), HasSubstr(detail)) << text;
}

// An aggregate-format document of 2 layers x 3 experts with `counts` spliced in.
std::string Aggregate(const std::string& counts) {
  return absl::StrCat(R"({"num_layers": 2, "num_experts": 3, "counts": )", counts, "}");
}

// A craft-format document of 2 layers x 2 experts with `body` spliced in.
std::string Craft(const std::string& body) {
  return absl::StrCat(R"({"format": "craft.trace.v1", "num_layers": 2, "num_experts": 2, )", body,
                      "}");
}

TEST(ParseTraceJsonTest, ReadsAggregateFormatIgnoringOtherKeys) {
  const absl::StatusOr<LoadTrace> trace = ParseTraceJson(R"({
    "counts": [[10.0, 0.0, 30.0], [20.0, 15.0, 5.0]],
    "num_layers": 2, "num_experts": 3,
    "src": "/logs/expert_distribution_recorder.pt"})");
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->num_layers(), 2);
  EXPECT_EQ(trace->num_experts(), 3);
  EXPECT_EQ(trace->num_windows(), 0);
  EXPECT_THAT(trace->aggregate(0), ::testing::ElementsAre(10, 0, 30));
  EXPECT_THAT(trace->aggregate(1), ::testing::ElementsAre(20, 15, 5));
}

TEST(ParseTraceJsonTest, RoundsFractionalCountsToNearest) {
  const absl::StatusOr<LoadTrace> trace =
      ParseTraceJson(Aggregate("[[2.4, 2.6, 2.5], [0.49, 7, 1e3]]"));
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_THAT(trace->aggregate(0), ::testing::ElementsAre(2, 3, 3));
  EXPECT_THAT(trace->aggregate(1), ::testing::ElementsAre(0, 7, 1000));
}

TEST(ParseTraceJsonTest, AcceptsCountsUpTo2To53) {
  const absl::StatusOr<LoadTrace> trace =
      ParseTraceJson(Aggregate("[[9007199254740992, 0, 0], [0, 0, 0]]"));
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->aggregate(0)[0], int64_t{1} << 53);
}

TEST(ParseTraceJsonTest, CraftFormatSumsWindowsWhenCountsAreAbsent) {
  const absl::StatusOr<LoadTrace> trace =
      ParseTraceJson(Craft(R"("top_k": 1, "windows": [[[1, 2], [3, 4]], [[10, 20], [30, 40]]])"));
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->num_windows(), 2);
  EXPECT_THAT(trace->window(1, 0), ::testing::ElementsAre(10, 20));
  EXPECT_THAT(trace->aggregate(0), ::testing::ElementsAre(11, 22));
  EXPECT_THAT(trace->aggregate(1), ::testing::ElementsAre(33, 44));
}

TEST(ParseTraceJsonTest, CraftFormatUsesGivenCountsAsTheAggregate) {
  const absl::StatusOr<LoadTrace> trace =
      ParseTraceJson(Craft(R"("windows": [[[1, 2], [3, 4]]], "counts": [[5, 5], [6, 6]])"));
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_THAT(trace->window(0, 1), ::testing::ElementsAre(3, 4));
  EXPECT_THAT(trace->aggregate(1), ::testing::ElementsAre(6, 6));
}

TEST(TraceToJsonTest, RoundTripsWindowsAndAggregate) {
  LoadTrace trace(2, 3, 2);
  for (int b = 0; b < 2; ++b) {
    for (int l = 0; l < 2; ++l) {
      for (int e = 0; e < 3; ++e) trace.mutable_window(b, l)[e] = 100 * b + 10 * l + e;
    }
  }
  trace.SetAggregateFromWindows();
  trace.mutable_aggregate(1)[2] = int64_t{1} << 40;  // written as given, not re-derived
  const std::string json = TraceToJson(trace, /*top_k=*/2);
  EXPECT_THAT(json, HasSubstr(R"("format":"craft.trace.v1")"));
  EXPECT_THAT(json, HasSubstr(R"("top_k":2)"));
  const absl::StatusOr<LoadTrace> parsed = ParseTraceJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->num_windows(), 2);
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(parsed->aggregate(l), trace.aggregate(l));
    for (int b = 0; b < 2; ++b) EXPECT_EQ(parsed->window(b, l), trace.window(b, l));
  }
}

TEST(TraceToJsonTest, RoundTripsAggregateOnlyTraceWithoutTopK) {
  LoadTrace trace(1, 4);
  trace.mutable_aggregate(0)[3] = 9;
  const std::string json = TraceToJson(trace, /*top_k=*/0);
  EXPECT_THAT(json, ::testing::Not(HasSubstr("top_k")));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("windows")));
  const absl::StatusOr<LoadTrace> parsed = ParseTraceJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->num_windows(), 0);
  EXPECT_THAT(parsed->aggregate(0), ::testing::ElementsAre(0, 0, 0, 9));
}

TEST(ParseTraceJsonTest, RejectsMalformedJsonWithPosition) {
  ExpectRejected(R"({"num_layers": 2,})", "line 1, column 18");
  ExpectRejected("", "not valid JSON");
  ExpectRejected(Aggregate("[[NaN, 1, 2], [0, 0, 0]]"), "not valid JSON");
  ExpectRejected(Aggregate("[[1e400, 1, 2], [0, 0, 0]]"), "number overflow");
  ExpectRejected("[1, 2]", "expected a JSON object at the top level, got an array");
}

TEST(ParseTraceJsonTest, RejectsMissingAndIllTypedKeys) {
  ExpectRejected(R"({"num_experts": 3, "counts": []})", R"(missing key "num_layers")");
  ExpectRejected(R"({"num_layers": 1, "counts": [[1]]})", R"(missing key "num_experts")");
  ExpectRejected(R"({"num_layers": 1, "num_experts": 1})", R"(missing key "counts")");
  ExpectRejected(R"({"num_layers": "2", "num_experts": 3, "counts": []})",
                 R"("num_layers" must be an integer in [1, 65536], got "2")");
  ExpectRejected(R"({"num_layers": 2.0, "num_experts": 3, "counts": []})",
                 R"("num_layers" must be an integer)");
  ExpectRejected(Aggregate(R"({"0": [1, 2, 3]})"), "counts must be an array, got an object");
  ExpectRejected(Aggregate("[[1, 2, 3], 4]"), "counts[1] must be an array, got 4");
}

TEST(ParseTraceJsonTest, RejectsBadShapes) {
  ExpectRejected(R"({"num_layers": 0, "num_experts": 3, "counts": []})",
                 R"("num_layers" must be an integer in [1, 65536], got 0)");
  ExpectRejected(R"({"num_layers": 1, "num_experts": 131072, "counts": [[]]})",
                 R"("num_experts" must be an integer in [1, 65536], got 131072)");
  ExpectRejected(R"({"num_layers": 32768, "num_experts": 32768, "counts": []})",
                 "over the limit of 268435456");
  ExpectRejected(Aggregate("[[1, 2, 3]]"), "counts has 1 entries, expected 2");
  ExpectRejected(Aggregate("[[1, 2, 3], [4, 5]]"), "counts[1] has 2 entries, expected 3");
  ExpectRejected(Craft(R"("windows": [[[1, 2], [3, 4]], [[1, 2], [3]]])"),
                 "windows[1][1] has 1 entries, expected 2");
  ExpectRejected(Craft(R"("windows": [[[1, 2], [3, 4]]], "counts": [[1, 2]])"),
                 "counts has 1 entries, expected 2");
}

TEST(ParseTraceJsonTest, RejectsBadCounts) {
  ExpectRejected(Aggregate("[[1, 2, 3], [4, -5, 6]]"),
                 "counts[1][1] is -5; counts must be non-negative");
  ExpectRejected(Aggregate("[[1, 2, -0.25], [4, 5, 6]]"), "counts[0][2] is -0.25");
  ExpectRejected(Aggregate(R"([[1, "2", 3], [4, 5, 6]])"),
                 R"(counts[0][1] must be a number, got "2")");
  ExpectRejected(Aggregate("[[1, 2, 3], [4, 5, null]]"), "counts[1][2] must be a number, got null");
  ExpectRejected(Aggregate("[[true, 2, 3], [4, 5, 6]]"), "counts[0][0] must be a number, got true");
  ExpectRejected(Aggregate("[[9007199254740993, 2, 3], [4, 5, 6]]"),
                 "counts[0][0] is 9007199254740993; counts must not exceed 2^53");
  ExpectRejected(Aggregate("[[1, 2, 3], [4, 5, 1e16]]"), "counts[1][2] is 1e+16");
  ExpectRejected(Craft(R"("windows": [[[1, 2], [3, 4]], [[1, 2], [3, -4]]])"),
                 "windows[1][1][1] is -4");
  ExpectRejected(Craft(R"("windows": [[[9007199254740992, 0], [0, 0]], [[1, 0], [0, 0]]])"),
                 "layer 0 expert 0 sum to more than 2^53");
}

TEST(ParseTraceJsonTest, RejectsBadCraftHeaders) {
  ExpectRejected(R"({"format": "craft.trace.v2", "num_layers": 1, "num_experts": 1})",
                 R"(unknown trace format "craft.trace.v2")");
  ExpectRejected(R"({"format": 1, "num_layers": 1, "num_experts": 1})",
                 R"("format" must be a string, got 1)");
  ExpectRejected(Craft(R"("top_k": 3, "counts": [[1, 2], [3, 4]])"),
                 R"("top_k" must be an integer in [1, 2], got 3)");
  ExpectRejected(Craft(R"("windows": [])"), R"(a craft trace needs "windows" or "counts")");
  ExpectRejected(Craft(R"("windows": {})"), R"("windows" must be an array)");
  ExpectRejected(R"({"num_layers": 1, "num_experts": 1, "counts": [[1]], "windows": [[[1]]]})",
                 R"("windows" need "format": "craft.trace.v1")");
}

TEST(ParseTraceJsonTest, RejectsInfinitiesAndNonArrayWindows) {
  ExpectRejected(Aggregate("[[Infinity, 1, 2], [0, 0, 0]]"), "not valid JSON");
  ExpectRejected(Aggregate("[[1, 2, 3], [-Infinity, 0, 0]]"), "not valid JSON");
  ExpectRejected(Craft(R"("windows": [[[1, 2], [3, 4]], 7])"),
                 "windows[1] must be an array, got 7");
}

// ParseTraceJson() reads plain input on a fast path and leaves the rest to the
// reference reader: both must give the same trace or the same refusal.
void ExpectSameAsReference(const std::string& text) {
  const absl::StatusOr<LoadTrace> fast = ParseTraceJson(text);
  const absl::StatusOr<LoadTrace> reference = io_internal::ParseTraceJsonReference(text);
  ASSERT_EQ(fast.ok(), reference.ok()) << text << "\n"
                                       << fast.status() << "\n"
                                       << reference.status();
  if (!fast.ok()) {
    EXPECT_EQ(fast.status(), reference.status());
    return;
  }
  ASSERT_EQ(fast->num_windows(), reference->num_windows());
  for (int l = 0; l < reference->num_layers(); ++l) {
    EXPECT_EQ(fast->aggregate(l), reference->aggregate(l)) << text;
    for (int b = 0; b < reference->num_windows(); ++b) {
      EXPECT_EQ(fast->window(b, l), reference->window(b, l)) << text;
    }
  }
}

TEST(ParseTraceJsonTest, FastPathAgreesWithReferenceOnEdgeCases) {
  // A repeated key keeps its last value.
  ExpectSameAsReference(
      R"({"num_layers": 9, "num_layers": 2, "num_experts": 3, "counts": [[1, 2, 3], [4, 5, 6]],
          "counts": [[3.5, 0.5, 2.4999], [0, 0, 1]]})");
  // Signed zeros, underflow to zero, exponents, floats on integral values.
  ExpectSameAsReference(Aggregate("[[-0, -0.0, 1e-400], [25E-1, 9007199254740992.0, 7.0]]"));
  ExpectSameAsReference(Aggregate("[[1, 2, 3], [4, 5, 9007199254740993.0]]"));
  ExpectSameAsReference(Aggregate("[[18446744073709551615, 0, 0], [0, 0, 0]]"));
  ExpectSameAsReference(Aggregate("[[123456789012345678901234567890, 0, 0], [0, 0, 0]]"));
  // Escapes and non-ASCII text in ignored keys; a byte-order mark.
  ExpectSameAsReference(absl::StrCat(R"({"src": "caf\u00e9 \ud83d\ude00", "x": "é",)",
                                     R"("num_layers": 1, "num_experts": 1, "counts": [[1]]})"));
  ExpectSameAsReference(R"({"src": "\udc00", "num_layers": 1, "num_experts": 1, "counts": [[1]]})");
  ExpectSameAsReference("\xEF\xBB\xBF{\"num_layers\": 1, \"num_experts\": 1, \"counts\": [[1]]}");
  // Trailing content, and values the aggregate format ignores.
  ExpectSameAsReference(R"({"num_layers": 1, "num_experts": 1, "counts": [[1]]} {})");
  ExpectSameAsReference(R"({"num_layers": 1, "num_experts": 1, "counts": [[1]], "top_k": 99})");
  ExpectSameAsReference(R"({"num_layers": 1, "num_experts": 1, "counts": [[1]], "src": 1e999})");
  // A declared shape far larger than the file (the fuzz runner's allocation
  // limit checks that nothing is allocated for it).
  ExpectSameAsReference(
      R"({"format": "craft.trace.v1", "num_layers": 65536, "num_experts": 4096, "windows": [],
          "counts": [[1]]})");
  // Counts given next to empty windows, and windows summed.
  ExpectSameAsReference(Craft(R"("top_k": 2, "windows": [], "counts": [[1, 2], [3, 4]])"));
  ExpectSameAsReference(Craft(R"("windows": [[[1, 2.5], [3, 4]], [[0, 0], [0.5, 0]]])"));
}

TEST(ParseTraceJsonTest, FastPathAgreesWithReferenceOnALargeTrace) {
  LoadTrace trace(7, 33, 12);
  uint64_t state = 1;
  for (int b = 0; b < trace.num_windows(); ++b) {
    for (int l = 0; l < trace.num_layers(); ++l) {
      for (int64_t& count : trace.mutable_window(b, l)) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        count = static_cast<int64_t>(state >> (24 + state % 32));  // 0 .. 2^40
      }
    }
  }
  trace.SetAggregateFromWindows();
  const std::string text = TraceToJson(trace, /*top_k=*/8);
  ExpectSameAsReference(text);
  const absl::StatusOr<LoadTrace> parsed = ParseTraceJson(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (int l = 0; l < trace.num_layers(); ++l) {
    EXPECT_EQ(parsed->aggregate(l), trace.aggregate(l));
    for (int b = 0; b < trace.num_windows(); ++b) {
      EXPECT_EQ(parsed->window(b, l), trace.window(b, l));
    }
  }
}

// Reads the recorded Qwen2-57B trace when the test runner points
// CRAFT_TRACES_DIR at the traces (--test_env=CRAFT_TRACES_DIR=...). The file is
// not part of the repository, so the test skips without it.
TEST(ParseTraceJsonTest, ReadsRecordedQwen57bTrace) {
  const char* dir = std::getenv("CRAFT_TRACES_DIR");
  if (dir == nullptr || *dir == '\0') GTEST_SKIP() << "CRAFT_TRACES_DIR is not set";
  const std::string path = absl::StrCat(dir, "/counts57b.json");
  std::ifstream file(path);
  if (!file) GTEST_SKIP() << path << " does not exist";
  std::stringstream text;
  text << file.rdbuf();
  const absl::StatusOr<LoadTrace> trace = ParseTraceJson(text.str());
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->num_layers(), 28);
  EXPECT_EQ(trace->num_experts(), 64);
  // Every layer routes the same tokens, each to top_k = 8 experts.
  const int64_t total = trace->LayerTotal(0);
  EXPECT_GT(total, 0);
  EXPECT_EQ(total % 8, 0);
  for (int l = 1; l < trace->num_layers(); ++l) EXPECT_EQ(trace->LayerTotal(l), total) << l;
}

}  // namespace
}  // namespace craft::planner
