#include "tools/local_cluster/yaml_merge.h"

#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace craft::local_cluster {
namespace {

TEST(MergeYamlTest, MergesMappingsKeyByKeyAndReplacesTheRest) {
  absl::StatusOr<std::string> merged = MergeYaml(
      "model: {num_layers: 6, top_k: 4}\nreplan: {budget: 2}\nsecurity: {nodes: [node0, node1]}\n",
      "{model: {top_k: 8}, security: {nodes: [a]}, apply: {timeout_ms: 20000}}");
  ASSERT_TRUE(merged.ok()) << merged.status();
  const YAML::Node config = YAML::Load(*merged);
  EXPECT_EQ(config["model"]["num_layers"].as<int>(), 6);
  EXPECT_EQ(config["model"]["top_k"].as<int>(), 8);
  EXPECT_EQ(config["replan"]["budget"].as<int>(), 2);
  ASSERT_EQ(config["security"]["nodes"].size(), 1u);
  EXPECT_EQ(config["security"]["nodes"][0].as<std::string>(), "a");
  EXPECT_EQ(config["apply"]["timeout_ms"].as<int>(), 20000);
}

TEST(MergeYamlTest, NoOverridesLeavesTheTextAsItWas) {
  const std::string base = "listen_address: \"127.0.0.1:7070\"\n";
  EXPECT_EQ(*MergeYaml(base, ""), base);
}

TEST(MergeYamlTest, RefusesWhatIsNotAMapping) {
  EXPECT_EQ(MergeYaml("a: 1\n", "[1, 2]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MergeYaml("a: 1\n", "{b: [").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace craft::local_cluster
