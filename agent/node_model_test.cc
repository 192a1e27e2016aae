// Where the node's model shape comes from: flags first, the planner for the
// rest, a persisted planner shape only when it agrees with the flags.
#include "agent/node_model.h"

#include "gtest/gtest.h"

namespace craft::agent {
namespace {

craft::v1::ModelShape Shape(int layers, int experts, int top_k, int64_t bytes) {
  craft::v1::ModelShape shape;
  shape.set_num_layers(layers);
  shape.set_num_experts(experts);
  shape.set_top_k(top_k);
  shape.set_bytes_per_expert(bytes);
  return shape;
}

TEST(NodeModelTest, FlagsWinAndThePlannerFillsTheRest) {
  NodeModel model({/*num_layers=*/12, /*num_experts=*/0, /*top_k=*/0}, std::nullopt);
  EXPECT_FALSE(model.shape().has_value()) << "the expert count is not known";
  EXPECT_EQ(model.configured().num_layers(), 12);
  ASSERT_TRUE(model.AdoptPlannerShape(Shape(12, 64, 8, 4096)).ok());
  ASSERT_TRUE(model.shape().has_value());
  EXPECT_EQ(model.shape()->SerializeAsString(), Shape(12, 64, 8, 4096).SerializeAsString());
  EXPECT_EQ(model.configured().num_experts(), 0) << "the hello states the flags only";
}

TEST(NodeModelTest, APlannerShapeContradictingTheFlagsIsNotAdopted) {
  NodeModel model({12, 64, 8}, std::nullopt);
  absl::Status refused = model.AdoptPlannerShape(Shape(13, 64, 8, 4096));
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.contradiction().find("num_layers 13 (not 12)"), std::string::npos)
      << model.contradiction();
  EXPECT_FALSE(model.from_planner().has_value());
  EXPECT_EQ(model.shape()->num_layers(), 12);
  EXPECT_EQ(model.shape()->bytes_per_expert(), 0) << "not checked";
  // One that agrees clears it.
  ASSERT_TRUE(model.AdoptPlannerShape(Shape(12, 64, 8, 4096)).ok());
  EXPECT_TRUE(model.contradiction().empty());
  EXPECT_EQ(model.shape()->bytes_per_expert(), 4096);
}

TEST(NodeModelTest, APersistedShapeIsKeptUnlessTheFlagsSayOtherwise) {
  EXPECT_EQ(NodeModel({}, Shape(12, 64, 8, 4096)).shape()->num_experts(), 64);
  EXPECT_FALSE(NodeModel({}, Shape(0, 64, 8, 4096)).shape().has_value()) << "malformed";
  NodeModel changed({/*num_layers=*/13, 0, 0}, Shape(12, 64, 8, 4096));
  EXPECT_FALSE(changed.from_planner().has_value());
  EXPECT_FALSE(changed.shape().has_value());
}

TEST(NodeModelTest, MalformedPlannerShapesAreRefused) {
  NodeModel model({}, std::nullopt);
  EXPECT_FALSE(model.AdoptPlannerShape(Shape(0, 64, 8, 1)).ok());
  EXPECT_FALSE(model.AdoptPlannerShape(Shape(12, 64, 65, 1)).ok());
  EXPECT_FALSE(model.AdoptPlannerShape(Shape(12, 64, 8, -1)).ok());
  EXPECT_TRUE(model.contradiction().empty()) << "malformed is not a contradiction";
  EXPECT_TRUE(model.AdoptPlannerShape(Shape(12, 64, 0, 0)).ok()) << "top_k and bytes unknown";
}

TEST(NodeModelTest, WorkersMustMatchEveryFieldTheNodeKnows) {
  const craft::v1::ModelShape node = Shape(12, 64, 0, 4096);
  EXPECT_TRUE(CheckWorkerModel(Shape(12, 64, 8, 4096), node).ok()) << "top_k not checked";
  EXPECT_FALSE(CheckWorkerModel(Shape(13, 64, 8, 4096), node).ok());
  EXPECT_FALSE(CheckWorkerModel(Shape(12, 64, 8, 0), node).ok()) << "bytes unknown to it";
  EXPECT_FALSE(CheckWorkerModel(Shape(12, 64, 0, 4096), node).ok()) << "a worker needs top_k";
  EXPECT_FALSE(CheckWorkerModel(Shape(12, 64, 65, 4096), Shape(12, 64, 0, 0)).ok());
}

}  // namespace
}  // namespace craft::agent
