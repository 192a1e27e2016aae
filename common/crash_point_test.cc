#include "common/crash_point.h"

#include "gtest/gtest.h"

namespace craft {
namespace {

TEST(CrashSpecTest, ParsesThePointAndItsOptions) {
  absl::StatusOr<CrashSpec> spec = ParseCrashSpec("  agent.commit_persisted hit=2 delay_ms=15 ");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->point, "agent.commit_persisted");
  EXPECT_EQ(spec->hit, 2);
  EXPECT_EQ(spec->delay_ms, 15);

  spec = ParseCrashSpec("planner.commit_persisted");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->hit, 1);
  EXPECT_EQ(spec->delay_ms, 0);
}

TEST(CrashSpecTest, AnEmptyLineArmsNothing) {
  EXPECT_EQ(ParseCrashSpec("").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseCrashSpec("   ").status().code(), absl::StatusCode::kNotFound);
}

TEST(CrashSpecTest, RefusesMalformedOptions) {
  for (const char* line : {"p hit=0", "p hit=-1", "p delay_ms=x", "p when=now",
                           "p hit=", "p delay_ms=-5", "p hit=99999999999999"}) {
    EXPECT_EQ(ParseCrashSpec(line).status().code(), absl::StatusCode::kInvalidArgument) << line;
  }
}

TEST(CrashPointTest, UnarmedPointsDoNothing) {
  // CRAFT_CRASH_POINTS_FILE is not set under the test runner.
  ReachCrashPoint("planner.commit_persisted");
  SUCCEED();
}

}  // namespace
}  // namespace craft
