// A calibration file: the roofline model's parameters (roofline.h) for one
// expert shape on one GPU kind, measured on that GPU (step_bench --calibrate).
//
//   # made by: step_bench --calibrate --hidden 7168 --inter 2048 --out ...
//   version: 1
//   gpu: NVIDIA H200
//   expert: {hidden: 7168, intermediate: 2048, dtype: bf16}
//   model:
//     fixed_us: 70.5
//     per_token_us: 0.125
//     knee_sharpness: 4        # optional, 0 (default): max(fixed, per_token x tokens)
//     gpu_fixed_us: 4.1        # optional, default 0
//     dispatch_us_per_token: 0 # optional, default 0
//     curve:                   # optional, the measured slot curve (roofline.h)
//       - [1, 27.6]
//       - [4096, 546.9]
//
// Every key is checked: unknown, missing, duplicate, wrongly typed, negative
// or non-finite values and unknown versions are INVALID_ARGUMENT errors that
// name file:line:column and the key.
#ifndef CRAFT_PLANNER_COST_CALIBRATION_H_
#define CRAFT_PLANNER_COST_CALIBRATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "planner/cost/roofline.h"

namespace craft::planner {

struct Calibration {
  std::string gpu;  // e.g. "NVIDIA H200"
  int64_t hidden = 0;
  int64_t intermediate = 0;
  std::string dtype = "bf16";
  RooflineParams params;
};

inline constexpr int kCalibrationVersion = 1;

// Parses a calibration document; `file_name` prefixes every error.
absl::StatusOr<Calibration> ParseCalibration(absl::string_view yaml_text,
                                             absl::string_view file_name);

// Reads and parses the file at `path` (NOT_FOUND when it cannot be read).
absl::StatusOr<Calibration> LoadCalibrationFile(const std::string& path);

// The document ParseCalibration reads back, after `header` (comment lines,
// each written with a leading "# ").
std::string FormatCalibration(const Calibration& calibration, absl::string_view header);

}  // namespace craft::planner

#endif  // CRAFT_PLANNER_COST_CALIBRATION_H_
