#include "wire/layout_shape.h"

#include "gtest/gtest.h"

namespace craft {
namespace {

TEST(CheckLayoutShapeTest, SameShapeIsOk) {
  EXPECT_TRUE(
      CheckLayoutShape("layout", {12, 64, 8, 2}, "the configured shape", {12, 64, 8, 2}).ok());
}

TEST(CheckLayoutShapeTest, AnyDimensionDifferingIsRefusedNamingBoth) {
  const planner::LayoutShape want{12, 64, 8, 2};
  for (const planner::LayoutShape& got :
       {planner::LayoutShape{11, 64, 8, 2}, planner::LayoutShape{12, 63, 8, 2},
        planner::LayoutShape{12, 64, 16, 2}, planner::LayoutShape{12, 64, 8, 1}}) {
    const absl::Status status = CheckLayoutShape("layout 1.4", got, "this worker's", want);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << got.ToString();
    EXPECT_EQ(status.message(),
              "layout 1.4 has shape " + got.ToString() + "; this worker's is " + want.ToString());
  }
}

}  // namespace
}  // namespace craft
