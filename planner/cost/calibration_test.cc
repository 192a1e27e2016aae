#include "planner/cost/calibration.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace craft::planner {
namespace {

using ::testing::HasSubstr;

constexpr char kGood[] = R"(# made by: expert_calibrate --hidden 7168 --inter 2048
version: 1
gpu: NVIDIA H200
expert:
  hidden: 7168
  intermediate: 2048
  dtype: bf16
model:
  fixed_us: 70.5
  per_token_us: 0.125
  knee_sharpness: 4
  gpu_fixed_us: 4.5
  dispatch_us_per_token: 0.002
)";

// kGood with `from` replaced by `to`; the replacement must happen.
std::string With(const std::string& from, const std::string& to) {
  const std::string text = absl::StrReplaceAll(kGood, {{from, to}});
  EXPECT_NE(text, kGood) << from;
  return text;
}

std::string ErrorOf(const std::string& text) {
  auto parsed = ParseCalibration(text, "cal.yaml");
  EXPECT_FALSE(parsed.ok());
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(CalibrationTest, ParsesEveryField) {
  auto parsed = ParseCalibration(kGood, "cal.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->gpu, "NVIDIA H200");
  EXPECT_EQ(parsed->hidden, 7168);
  EXPECT_EQ(parsed->intermediate, 2048);
  EXPECT_EQ(parsed->dtype, "bf16");
  EXPECT_DOUBLE_EQ(parsed->params.fixed_us, 70.5);
  EXPECT_DOUBLE_EQ(parsed->params.per_token_us, 0.125);
  EXPECT_DOUBLE_EQ(parsed->params.knee_sharpness, 4);
  EXPECT_DOUBLE_EQ(parsed->params.gpu_fixed_us, 4.5);
  EXPECT_DOUBLE_EQ(parsed->params.dispatch_us_per_token, 0.002);
}

TEST(CalibrationTest, OptionalModelKeysDefaultToZero) {
  auto parsed = ParseCalibration(With("  knee_sharpness: 4\n  gpu_fixed_us: 4.5\n"
                                      "  dispatch_us_per_token: 0.002\n",
                                      ""),
                                 "cal.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->params.knee_sharpness, 0);
  EXPECT_EQ(parsed->params.gpu_fixed_us, 0);
}

TEST(CalibrationTest, FormatRoundTrips) {
  auto parsed = ParseCalibration(kGood, "cal.yaml");
  ASSERT_TRUE(parsed.ok());
  const std::string text = FormatCalibration(*parsed, "made by: a test\nsecond line");
  EXPECT_THAT(text, HasSubstr("# made by: a test\n# second line\n"));
  auto again = ParseCalibration(text, "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->gpu, parsed->gpu);
  EXPECT_EQ(again->hidden, parsed->hidden);
  EXPECT_DOUBLE_EQ(again->params.fixed_us, parsed->params.fixed_us);
  EXPECT_DOUBLE_EQ(again->params.per_token_us, parsed->params.per_token_us);
  EXPECT_DOUBLE_EQ(again->params.knee_sharpness, parsed->params.knee_sharpness);
}

TEST(CalibrationTest, ACurveParsesRoundTripsAndIsChecked) {
  const std::string with_curve =
      With("  dispatch_us_per_token: 0.002\n",
           "  dispatch_us_per_token: 0.002\n  curve:\n    - [1, 27.5]\n    - [512, 70]\n");
  auto parsed = ParseCalibration(with_curve, "cal.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->params.curve.size(), 2u);
  EXPECT_DOUBLE_EQ(parsed->params.curve[1].tokens, 512);
  EXPECT_DOUBLE_EQ(parsed->params.curve[1].us, 70);
  auto again = ParseCalibration(FormatCalibration(*parsed, ""), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->params.curve.size(), 2u);
  EXPECT_THAT(ErrorOf(absl::StrReplaceAll(with_curve, {{"[512, 70]", "[512]"}})),
              HasSubstr("cal.yaml:16:7: model.curve[1]: expected [tokens, us]"));
  EXPECT_THAT(ErrorOf(absl::StrReplaceAll(with_curve, {{"[512, 70]", "[512, -1]"}})),
              HasSubstr("model.curve[1]: expected a finite number >= 0"));
  EXPECT_THAT(ErrorOf(absl::StrReplaceAll(with_curve, {{"[512, 70]", "[512, 20]"}})),
              HasSubstr("curve times must not fall"));
  EXPECT_THAT(ErrorOf(absl::StrReplaceAll(with_curve, {{"    - [1, 27.5]\n", ""},
                                                       {"    - [512, 70]\n", ""},
                                                       {"  curve:\n", "  curve: 3\n"}})),
              HasSubstr("model.curve: expected a sequence"));
}

TEST(CalibrationTest, MissingKeysNameTheKeyAndLine) {
  EXPECT_THAT(ErrorOf(With("  per_token_us: 0.125\n", "")),
              HasSubstr("missing required key 'model.per_token_us'"));
  EXPECT_THAT(ErrorOf(With("version: 1\n", "")), HasSubstr("missing required key 'version'"));
  EXPECT_THAT(ErrorOf(With("  hidden: 7168\n", "")),
              HasSubstr("cal.yaml:5:3: missing required key 'expert.hidden'"));
}

TEST(CalibrationTest, NegativeAndNonFiniteNumbersAreRefusedAtTheirLine) {
  EXPECT_THAT(ErrorOf(With("fixed_us: 70.5", "fixed_us: -1")),
              HasSubstr("cal.yaml:9:13: model.fixed_us: expected a finite number >= 0"));
  EXPECT_THAT(ErrorOf(With("per_token_us: 0.125", "per_token_us: .nan")),
              HasSubstr("cal.yaml:10:17: model.per_token_us"));
  EXPECT_THAT(ErrorOf(With("gpu_fixed_us: 4.5", "gpu_fixed_us: .inf")),
              HasSubstr("model.gpu_fixed_us"));
  EXPECT_THAT(ErrorOf(With("hidden: 7168", "hidden: -7168")), HasSubstr("expert.hidden"));
  EXPECT_THAT(ErrorOf(With("per_token_us: 0.125", "per_token_us: 0")),
              HasSubstr("per_token_us must be > 0"));
  EXPECT_THAT(ErrorOf(With("knee_sharpness: 4", "knee_sharpness: 0.5")),
              HasSubstr("knee_sharpness must be 0"));
}

TEST(CalibrationTest, UnknownAndDuplicateKeysAreRefused) {
  EXPECT_THAT(ErrorOf(With("  fixed_us: 70.5\n", "  fixed_us: 70.5\n  fixed_ms: 1\n")),
              HasSubstr("cal.yaml:10:3: unknown key 'model.fixed_ms'"));
  EXPECT_THAT(ErrorOf(With("version: 1\n", "version: 1\nregime: 256\n")),
              HasSubstr("unknown key 'regime'"));
  EXPECT_THAT(ErrorOf(With("  fixed_us: 70.5\n", "  fixed_us: 70.5\n  fixed_us: 71\n")),
              HasSubstr("duplicate key 'model.fixed_us'"));
}

TEST(CalibrationTest, WrongTypesAreRefused) {
  EXPECT_THAT(ErrorOf(With("fixed_us: 70.5", "fixed_us: fast")),
              HasSubstr("model.fixed_us: expected a number, got 'fast'"));
  EXPECT_THAT(ErrorOf(With("fixed_us: 70.5", "fixed_us: [1, 2]")),
              HasSubstr("model.fixed_us: expected a number"));
  EXPECT_THAT(ErrorOf(With("hidden: 7168", "hidden: 71.5")), HasSubstr("expected an integer"));
  EXPECT_THAT(ErrorOf(With("gpu: NVIDIA H200", "gpu: {a: 1}")), HasSubstr("gpu: expected a name"));
  EXPECT_THAT(ErrorOf(With("dtype: bf16", "dtype: fp8")), HasSubstr("only bf16"));
  EXPECT_THAT(ErrorOf("- 1\n- 2\n"), HasSubstr("the document must be a mapping"));
  EXPECT_THAT(ErrorOf(With("model:\n", "model: 3\n  x:\n")), HasSubstr("cal.yaml"));
}

TEST(CalibrationTest, UnknownVersionsAreRefused) {
  EXPECT_THAT(ErrorOf(With("version: 1", "version: 2")),
              HasSubstr("cal.yaml:2:10: version: unknown version 2"));
  EXPECT_THAT(ErrorOf(With("version: 1", "version: one")), HasSubstr("version"));
}

TEST(CalibrationTest, MalformedYamlGivesALine) {
  EXPECT_THAT(ErrorOf("version: 1\nmodel: {fixed_us: 1\n"), HasSubstr("cal.yaml:"));
}

// The H200 calibrations in deploy/calibration parse and say what they are for.
TEST(CalibrationTest, ShippedCalibrationsParse) {
  const char* root = std::getenv("TEST_SRCDIR");
  const struct {
    const char* file;
    int64_t hidden, intermediate;
  } shipped[] = {{"deploy/calibration/h200_deepseek_v3.yaml", 7168, 2048},
                 {"deploy/calibration/h200_qwen3_235b.yaml", 4096, 1536}};
  for (const auto& entry : shipped) {
    const std::string path = root ? std::string(root) + "/craft/" + entry.file : entry.file;
    auto calibration = LoadCalibrationFile(path);
    ASSERT_TRUE(calibration.ok()) << entry.file << ": " << calibration.status();
    EXPECT_EQ(calibration->gpu, "NVIDIA H200");
    EXPECT_EQ(calibration->hidden, entry.hidden);
    EXPECT_EQ(calibration->intermediate, entry.intermediate);
  }
}

TEST(CalibrationTest, AMissingFileIsNotFound) {
  EXPECT_EQ(LoadCalibrationFile("/nonexistent/cal.yaml").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace craft::planner
