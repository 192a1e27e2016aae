// Tests of layout JSON: craft's format round trip and rejections, and SGLang's
// --init-expert-location export.
#include "planner/io/layout_json.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "planner/layout.h"

namespace craft::planner {
namespace {

using ::testing::HasSubstr;

// 3 experts on 2 GPUs (one node), 2 layers with the same slot counts.
Layout UniformLayout() {
  Layout layout;
  layout.num_experts = 3;
  layout.cluster = {2, 1};
  layout.layers.push_back({{2, 2}, {0, 1, 2, 0}});
  layout.layers.push_back({{2, 2}, {2, 1, 0, 1}});
  return layout;
}

// 4 experts on 4 GPUs (2 nodes); the layers hold different replica counts.
Layout PerLayerLayout() {
  Layout layout;
  layout.num_experts = 4;
  layout.cluster = {4, 2};
  layout.layers.push_back({{1, 1, 1, 1}, {0, 1, 2, 3}});
  layout.layers.push_back({{2, 1, 2, 1}, {0, 3, 1, 2, 0, 3}});
  return layout;
}

// A craft-format layout document for UniformLayout() with `layer1` as its second layer.
std::string WithLayer1(const std::string& layer1) {
  return absl::StrCat(
      R"({"format": "craft.layout.v1", "num_layers": 2, "num_experts": 3, "num_gpus": 2,)"
      R"( "num_nodes": 1, "algorithm": "eplb", "layers": [)"
      R"({"slots_per_gpu": [2, 2], "phy2log": [0, 1, 2, 0], "logcnt": [2, 1, 1]}, )",
      layer1, "]}");
}

// Expects `text` to be rejected with INVALID_ARGUMENT mentioning `detail`.
void ExpectRejected(const std::string& text, const std::string& detail) {
  const absl::StatusOr<Layout> layout = ParseLayoutJson(text);
  ASSERT_FALSE(layout.ok()) << "accepted: " << text;
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(layout.status().message()), HasSubstr(detail)) << text;
}

TEST(LayoutJsonTest, RoundTripsPerLayerLayoutWithExtraFields) {
  const Layout layout = PerLayerLayout();
  const nlohmann::json extra = {{"budget", 1}, {"replicas_per_layer", {0, 2}}};
  const std::string json = LayoutToJson(layout, "craft", extra);
  const nlohmann::json written = nlohmann::json::parse(json);
  EXPECT_EQ(written["format"], "craft.layout.v1");
  EXPECT_EQ(written["algorithm"], "craft");
  EXPECT_EQ(written["budget"], 1);
  EXPECT_EQ(written["replicas_per_layer"], nlohmann::json({0, 2}));
  EXPECT_EQ(written["layers"][1]["logcnt"], nlohmann::json({2, 1, 1, 2}));
  const absl::StatusOr<Layout> parsed = ParseLayoutJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, layout);
}

TEST(LayoutJsonTest, HeaderComesFirst) {
  const std::string json = LayoutToJson(UniformLayout(), "none");
  EXPECT_EQ(json.rfind(R"({"format":"craft.layout.v1","num_layers":2,)", 0), 0u) << json;
}

TEST(LayoutJsonTest, LogcntIsOptional) {
  const absl::StatusOr<Layout> parsed =
      ParseLayoutJson(WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0, 1]})"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, UniformLayout());
}

TEST(LayoutJsonTest, RejectsLogcntThatDisagreesWithPhy2log) {
  ExpectRejected(
      WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0, 1], "logcnt": [1, 1, 2]})"),
      "layers[1].logcnt[1] is 1 but phy2log holds 2 replicas of expert 1");
  ExpectRejected(
      WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0, 1], "logcnt": [1, 2]})"),
      "layers[1].logcnt has 2 entries, expected 3");
}

TEST(LayoutJsonTest, RejectsMalformedLayers) {
  ExpectRejected(WithLayer1("[2, 2]"), "layers[1] must be an object, got an array");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2]})"), R"(layers[1]: missing key "phy2log")");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2, 0], "phy2log": [2, 1, 0, 1]})"),
                 "layers[1].slots_per_gpu has 3 entries, expected 2");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, -2], "phy2log": [2, 1, 0, 1]})"),
                 "layers[1].slots_per_gpu[1] must be an integer in [0, 2147483647], got -2");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 3, 1]})"),
                 "layers[1].phy2log[2] must be an integer in [0, 2], got 3");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0.5, 1]})"),
                 "layers[1].phy2log[2] must be an integer in [0, 2], got 0.5");
  // Structurally well-typed but not a valid layout: Layout::Validate() explains.
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0]})"),
                 "layer 1: slots_per_gpu sums to 4 but phy2log has 3 slots");
  ExpectRejected(WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 2, 1]})"),
                 "layer 1: expert 0 has no replica");
}

// A valid craft-format document for UniformLayout() with `from` replaced by `to`.
std::string EditedHeader(const std::string& from, const std::string& to) {
  std::string text = WithLayer1(R"({"slots_per_gpu": [2, 2], "phy2log": [2, 1, 0, 1]})");
  return text.replace(text.find(from), from.size(), to);
}

TEST(LayoutJsonTest, RejectsBadHeaders) {
  ASSERT_TRUE(ParseLayoutJson(EditedHeader("", "")).ok());  // the unedited document
  ExpectRejected("{", "not valid JSON");
  ExpectRejected(R"({"num_layers": 1})", R"(missing key "format")");
  ExpectRejected(R"({"format": "sglang", "num_layers": 1})", R"(unknown layout format "sglang")");
  ExpectRejected(EditedHeader(R"("num_layers": 2)", R"("num_layers": 3)"),
                 R"("layers" has 2 entries, expected 3)");
  ExpectRejected(EditedHeader(R"("num_gpus": 2)", R"("num_gpus": 0)"),
                 R"("num_gpus" must be an integer in [1, 65536], got 0)");
  ExpectRejected(EditedHeader(R"("num_nodes": 1)", R"("num_nodes": 4)"),
                 "num_gpus (2) must be a multiple of num_nodes (4)");
  ExpectRejected(EditedHeader(R"("num_experts": 3)", R"("num_experts": "3")"),
                 R"("num_experts" must be an integer)");
  ExpectRejected(EditedHeader(R"("layers": [)", R"("layerz": [)"), R"(missing key "layers")");
}

TEST(LayoutToSglangJsonTest, WritesPhysicalToLogicalMap) {
  const absl::StatusOr<std::string> json = LayoutToSglangJson(UniformLayout());
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json, R"({"physical_to_logical_map":[[0,1,2,0],[2,1,0,1]]})");
}

TEST(LayoutToSglangJsonTest, RefusesPerLayerSlotCounts) {
  const absl::StatusOr<std::string> json = LayoutToSglangJson(PerLayerLayout());
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(json.status().message());
  EXPECT_THAT(message, HasSubstr("layer 1 puts 2 slots on GPU 0 where layer 0 has 1 per GPU"));
  EXPECT_THAT(message, HasSubstr("per-layer expert counts"));
  EXPECT_THAT(message, HasSubstr("--algorithm eplb or none"));
}

TEST(LayoutToSglangJsonTest, RejectsInvalidLayout) {
  Layout layout = UniformLayout();
  layout.layers[0].phy2log[0] = 7;
  EXPECT_EQ(LayoutToSglangJson(layout).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::planner
