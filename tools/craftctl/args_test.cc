#include "tools/craftctl/args.h"

#include "gtest/gtest.h"

namespace craft::ctl {
namespace {

TEST(ArgsTest, ReadsEveryFlagForm) {
  auto args =
      Args::Parse({"--gpus", "64", "--nodes=8", "--no-duplicates", "--candidates", "0,1,2,4"},
                  {"no-duplicates"});
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(*args->Int("gpus"), 64);
  EXPECT_EQ(*args->IntOr("nodes", 1), 8);
  EXPECT_EQ(*args->IntOr("groups", 1), 1);
  EXPECT_TRUE(args->Switch("no-duplicates"));
  EXPECT_EQ(*args->IntListOr("candidates", {}), (std::vector<int>{0, 1, 2, 4}));
  EXPECT_TRUE(args->CheckAllUsed().ok());
}

TEST(ArgsTest, UnknownAndMalformedFlagsAreErrors) {
  auto args = Args::Parse({"--gpu", "64"}, {});
  ASSERT_TRUE(args.ok());
  EXPECT_FALSE(args->Int("gpus").ok());  // required, missing
  EXPECT_EQ(args->CheckAllUsed().message(), "unknown flag --gpu");
  EXPECT_FALSE(Args::Parse({"plan"}, {}).ok());
  EXPECT_FALSE(Args::Parse({"--gpus"}, {}).ok());
  EXPECT_FALSE(Args::Parse({"--gpus", "1", "--gpus", "2"}, {}).ok());
  auto bad = Args::Parse({"--gpus", "x", "--hbm", "nan", "--candidates", "1,a"}, {});
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->Int("gpus").ok());
  EXPECT_FALSE(bad->DoubleOr("hbm", 1).ok());
  EXPECT_FALSE(bad->IntListOr("candidates", {}).ok());
}

}  // namespace
}  // namespace craft::ctl
