// Tests of layout JSON: craft's format round trip and rejections, and SGLang's
// --init-expert-location export.
#include "planner/io/layout_json.h"

#include <string>
#include <vector>

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

TEST(LayoutJsonDeathTest, ExtraFieldsMayNotBeTheFormatsOwn) {
  EXPECT_DEATH(LayoutToJson(UniformLayout(), "craft", {{"layers", 1}}),
               "check failed: .*extra field \"layers\" is the format's own");
  EXPECT_DEATH(LayoutToJson(UniformLayout(), "craft", nlohmann::json::array()),
               "check failed: extra.is_object\\(\\): extra is a JSON array");
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
  EXPECT_THAT(message, HasSubstr("plan with --uniform"));
}

TEST(LayoutToSglangJsonTest, RejectsInvalidLayout) {
  Layout layout = UniformLayout();
  layout.layers[0].phy2log[0] = 7;
  EXPECT_EQ(LayoutToSglangJson(layout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseLayerSpecTest, ReadsRangesAndLists) {
  absl::StatusOr<std::vector<int>> layers = ParseLayerSpec("3-60", 61);
  ASSERT_TRUE(layers.ok()) << layers.status();
  ASSERT_EQ(layers->size(), 58u);
  EXPECT_EQ(layers->front(), 3);
  EXPECT_EQ(layers->back(), 60);
  EXPECT_EQ(*ParseLayerSpec("1,3,5", 6), (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(*ParseLayerSpec("0-1, 4 - 5,7", 8), (std::vector<int>{0, 1, 4, 5, 7}));
}

TEST(ParseLayerSpecTest, RejectsBadSpecs) {
  auto message = [](absl::string_view spec) {
    return std::string(ParseLayerSpec(spec, 61).status().message());
  };
  EXPECT_THAT(message("3-61"), HasSubstr("layer 61 is out of range; the model has 61 layers"));
  EXPECT_THAT(message("5,3"), HasSubstr("layer 3 comes after 5"));
  EXPECT_THAT(message("1-3,3"), HasSubstr("layer 3 comes after 3"));
  EXPECT_THAT(message("9-4"), HasSubstr("range 9-4 is backwards"));
  EXPECT_THAT(message("x"), HasSubstr("'x' is not a layer id"));
  EXPECT_THAT(message(""), HasSubstr("'' is not a layer id"));
  EXPECT_THAT(message("-3"), HasSubstr("'-3' is not a layer id"));
  EXPECT_THAT(message("1,,2"), HasSubstr("'' is not a layer id"));
}

// `num_layers` layers of 4 experts on 2 GPUs with 3 slots each (width 6): layer
// l holds {l % 4, 0, 1, 2, 3, (l + 1) % 4}.
Layout UniformLayers(int num_layers) {
  Layout layout;
  layout.num_experts = 4;
  layout.cluster = {2, 1};
  for (int l = 0; l < num_layers; ++l) {
    layout.layers.push_back({{3, 3}, {l % 4, 0, 1, 2, 3, (l + 1) % 4}});
  }
  return layout;
}

TEST(LayoutToSglangTest, PutsPlanLayersInTheirDecoderRows) {
  // DeepSeek-V3's shape: 61 decoder layers, 0-2 dense, 3-60 MoE.
  const Layout layout = UniformLayers(58);
  const absl::StatusOr<SglangExport> file =
      LayoutToSglang(layout, {61, *ParseLayerSpec("3-60", 61)});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->num_redundant_experts, 2);
  EXPECT_EQ(file->ep_size, 2);
  const nlohmann::json json = nlohmann::json::parse(file->json);
  ASSERT_EQ(json.size(), 1u);  // SGLang passes every key to init_by_mapping
  const nlohmann::json& map = json.at("physical_to_logical_map");
  ASSERT_EQ(map.size(), 61u);
  for (int row = 0; row < 3; ++row) {
    // Dense rows: SGLang's own trivial map, slot p -> expert p % E.
    EXPECT_EQ(map[row].get<std::vector<int>>(), (std::vector<int>{0, 1, 2, 3, 0, 1})) << row;
  }
  for (int l = 0; l < 58; ++l) {
    EXPECT_EQ(map[3 + l].get<std::vector<int>>(), layout.layers[l].phy2log) << l;
  }
}

TEST(LayoutToSglangTest, DenseRowsBetweenMoeRows) {
  const absl::StatusOr<SglangExport> file =
      LayoutToSglang(UniformLayers(3), {7, *ParseLayerSpec("1,3,5", 7)});
  ASSERT_TRUE(file.ok()) << file.status();
  const nlohmann::json map = nlohmann::json::parse(file->json).at("physical_to_logical_map");
  ASSERT_EQ(map.size(), 7u);
  const std::vector<int> trivial = {0, 1, 2, 3, 0, 1};
  for (int row : {0, 2, 4, 6}) EXPECT_EQ(map[row].get<std::vector<int>>(), trivial) << row;
  EXPECT_EQ(map[1].get<std::vector<int>>(), (std::vector<int>{0, 0, 1, 2, 3, 1}));
  EXPECT_EQ(map[5].get<std::vector<int>>(), (std::vector<int>{2, 0, 1, 2, 3, 3}));
}

TEST(LayoutToSglangTest, DefaultIsEveryLayerMoe) {
  const absl::StatusOr<SglangExport> file = LayoutToSglang(UniformLayout(), {});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->json, *LayoutToSglangJson(UniformLayout()));
  EXPECT_EQ(file->num_redundant_experts, 1);  // 4 slots for 3 experts
  EXPECT_TRUE(LayoutToSglang(UniformLayout(), {2, {}}).ok());
}

TEST(LayoutToSglangTest, RefusesLayerCountMismatch) {
  const absl::StatusOr<SglangExport> file =
      LayoutToSglang(UniformLayers(57), {61, *ParseLayerSpec("3-60", 61)});
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(file.status().message()),
              HasSubstr("the plan has 57 MoE layers but the model has 58 (layers 3-60 of 61)"));
  EXPECT_EQ(LayoutToSglang(UniformLayers(58), {61, {}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(LayoutToSglang(UniformLayers(2), {3, {2, 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LayoutToSglang(UniformLayers(2), {3, {1, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LayoutToSglangTest, RefusesPerLayerSlotCountsWithModelShape) {
  const absl::StatusOr<SglangExport> file = LayoutToSglang(PerLayerLayout(), {5, {1, 3}});
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("same number of slots"));
}

}  // namespace
}  // namespace craft::planner
