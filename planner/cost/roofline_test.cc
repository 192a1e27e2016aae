#include "planner/cost/roofline.h"

#include <cmath>

#include "gtest/gtest.h"
#include "planner/cost/fit.h"

namespace craft::planner {
namespace {

RooflineParams Params(double fixed, double per_token, double knee = 0) {
  RooflineParams params;
  params.fixed_us = fixed;
  params.per_token_us = per_token;
  params.knee_sharpness = knee;
  return params;
}

TEST(RooflineTest, TheHardKneeIsTheMaxOfTheFloorAndTheSlope) {
  const RooflineParams params = Params(80, 0.125);  // knee at 640 tokens
  EXPECT_DOUBLE_EQ(SlotUs(params, 0), 0);           // an empty expert is skipped
  EXPECT_DOUBLE_EQ(SlotUs(params, 1), 80);
  EXPECT_DOUBLE_EQ(SlotUs(params, 512), 80);
  EXPECT_DOUBLE_EQ(SlotUs(params, 640), 80);
  EXPECT_DOUBLE_EQ(SlotUs(params, 4096), 512);
  // A mean below one token: the slot runs in that fraction of the steps.
  EXPECT_DOUBLE_EQ(SlotUs(params, 0.25), 20);
}

TEST(RooflineTest, ASmoothKneeRoundsTheCornerAndMeetsBothAsymptotes) {
  const RooflineParams params = Params(80, 0.125, 4);
  EXPECT_NEAR(SlotUs(params, 640), 80 * std::pow(2.0, 0.25), 1e-9);  // both terms equal
  EXPECT_NEAR(SlotUs(params, 1), 80, 1e-6);
  EXPECT_NEAR(SlotUs(params, 1 << 16), 0.125 * (1 << 16), 1e-3);
  EXPECT_GT(SlotUs(params, 512), SlotUs(Params(80, 0.125), 512));
}

TEST(RooflineTest, SlotTimeNeverFallsAsTokensGrow) {
  for (double knee : {0.0, 1.0, 2.0, 4.0, 16.0}) {
    const RooflineParams params = Params(70, 0.11, knee);
    double last = 0;
    for (double x = 0; x <= 20000; x += x < 4 ? 0.125 : 7) {
      const double us = SlotUs(params, x);
      EXPECT_GE(us, last) << "knee " << knee << " at " << x;
      last = us;
    }
  }
}

TEST(RooflineTest, AGpuPaysItsSlotsItsLaunchAndItsDispatch) {
  RooflineParams params = Params(80, 0.125);
  params.gpu_fixed_us = 5;
  params.dispatch_us_per_token = 0.01;
  EXPECT_DOUBLE_EQ(GpuUs(params, {}), 0);
  EXPECT_DOUBLE_EQ(GpuUs(params, {10, 0, 4096}), 5 + 80 + 0 + 512 + 0.01 * 4106);
}

TEST(RooflineTest, InDecodeAReplicaCostsAWeightReadInPrefillItHalvesTheHotGpu) {
  // Two GPUs, experts 0 (hot) and 1; the replica of expert 0 goes on GPU 1.
  LayerPlacement plain{{1, 1}, {0, 1}};
  LayerPlacement replicated{{1, 2}, {0, 0, 1}};
  const std::vector<int64_t> counts = {3, 1};
  // Decode: 8 tokens per GPU, top-1: 12 and 4 assignments, every slot on its floor.
  const RooflineModel decode(Params(80, 0.125), {8, 1});
  EXPECT_DOUBLE_EQ(decode.LayerUs(plain, 2, counts), 80);
  EXPECT_DOUBLE_EQ(decode.LayerUs(replicated, 2, counts), 160);
  // Prefill: 8192 tokens per GPU: 12288 and 4096 tokens.
  const RooflineModel prefill(Params(80, 0.125), {8192, 1});
  EXPECT_DOUBLE_EQ(prefill.LayerUs(plain, 2, counts), 12288 * 0.125);
  EXPECT_DOUBLE_EQ(prefill.LayerUs(replicated, 2, counts), (6144 + 4096) * 0.125);
}

TEST(RooflineTest, BadParametersAndRegimesAreRefused) {
  EXPECT_TRUE(Params(80, 0.125).Validate().ok());
  EXPECT_FALSE(Params(-1, 0.125).Validate().ok());
  EXPECT_FALSE(Params(80, 0).Validate().ok());
  EXPECT_FALSE(Params(NAN, 0.125).Validate().ok());
  EXPECT_FALSE(Params(80, INFINITY).Validate().ok());
  EXPECT_FALSE(Params(80, 0.125, 0.5).Validate().ok());
  EXPECT_FALSE(RooflineModel(Params(80, 0.125), {0, 8}).Validate().ok());
  EXPECT_FALSE(RooflineModel(Params(80, 0.125), {256, 0}).Validate().ok());
  EXPECT_TRUE(RooflineModel(Params(80, 0.125), {256, 8}).Validate().ok());
}

TEST(RooflineTest, AMeasuredCurveIsInterpolatedFlatBelowAndSlopedAbove) {
  RooflineParams params = Params(80, 0.125);
  params.curve = {{1, 30}, {128, 32}, {512, 70}, {1024, 130}};
  ASSERT_TRUE(params.Validate().ok());
  EXPECT_DOUBLE_EQ(SlotUs(params, 0), 0);
  EXPECT_DOUBLE_EQ(SlotUs(params, 0.5), 15);
  EXPECT_DOUBLE_EQ(SlotUs(params, 1), 30);
  EXPECT_DOUBLE_EQ(SlotUs(params, 128), 32);
  EXPECT_DOUBLE_EQ(SlotUs(params, 320), 51);  // halfway from 128 to 512
  EXPECT_DOUBLE_EQ(SlotUs(params, 1024), 130);
  EXPECT_DOUBLE_EQ(SlotUs(params, 2048), 260);  // in proportion past the last point
  double last = 0;
  for (double x = 0; x <= 5000; x += 0.5) {
    EXPECT_GE(SlotUs(params, x), last) << x;
    last = SlotUs(params, x);
  }
  params.curve = {{1, 30}, {1, 31}};
  EXPECT_FALSE(params.Validate().ok());  // tokens must ascend
  params.curve = {{1, 30}, {8, 29}};
  EXPECT_FALSE(params.Validate().ok());  // times must not fall
  params.curve = {{0.5, 30}};
  EXPECT_FALSE(params.Validate().ok());
}

TEST(RooflineFitTest, MonotoneCurvePoolsASlowerPointBelowAFasterOne) {
  const std::vector<CurvePoint> curve =
      MonotoneCurve({{512, 67.5}, {1, 27}, {448, 82.5}, {640, 88}});
  ASSERT_EQ(curve.size(), 4u);
  EXPECT_EQ(curve[0].tokens, 1);
  EXPECT_DOUBLE_EQ(curve[1].us, 75);  // 448 and 512 pooled
  EXPECT_DOUBLE_EQ(curve[2].us, 75);
  EXPECT_DOUBLE_EQ(curve[3].us, 88);
}

TEST(RooflineFitTest, RecoversTheParametersOfAKneedCurve) {
  const RooflineParams truth = Params(72, 0.125, 4);
  std::vector<CurvePoint> points;
  for (double n : {1, 4, 16, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096, 8192}) {
    points.push_back({n, SlotUs(truth, n)});
  }
  auto fit = FitSlotCurve(points);
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_LT(fit->max_relative_error, 0.01);
  EXPECT_NEAR(fit->params.fixed_us, 72, 72 * 0.03);
  EXPECT_NEAR(fit->params.per_token_us, 0.125, 0.125 * 0.02);
  EXPECT_EQ(fit->params.knee_sharpness, 4);
}

TEST(RooflineFitTest, RefusesTooFewOrBadPoints) {
  EXPECT_FALSE(FitSlotCurve({{1, 70}, {4096, 500}}).ok());
  EXPECT_FALSE(FitSlotCurve({{1, 70}, {4096, 500}, {0, 70}}).ok());
  EXPECT_FALSE(FitSlotCurve({{1, 70}, {4096, 500}, {16, NAN}}).ok());
  EXPECT_FALSE(FitSlotCurve({{1, 70}, {4096, 500}, {16, -3}}).ok());
}

}  // namespace
}  // namespace craft::planner
