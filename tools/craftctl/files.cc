#include "tools/craftctl/files.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/file_io.h"
#include "common/status_macros.h"
#include "planner/io/layout_json.h"
#include "planner/io/trace_json.h"

namespace craft::ctl {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsDataLoss(text.status())) {
    return absl::DataLossError(absl::StrCat("error reading ", text.status().message()));
  }
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot open ", text.status().message()));
  return text;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::cout << text;
    return std::cout ? absl::OkStatus() : absl::DataLossError("error writing stdout");
  }
  return WriteFileAtomically(path, text);
}

absl::StatusOr<planner::LoadTrace> LoadTraceFile(const std::string& path) {
  CRAFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  // torch.save writes a zip archive: most likely an SGLang recorder dump.
  if (absl::StartsWith(text, "PK\x03\x04") || absl::EndsWith(path, ".pt")) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        " is a torch file, not a JSON trace; convert an SGLang expert-distribution dump "
        "first: python3 tools/sglang/dump_to_trace.py ",
        path, " --out trace.json [--layers SPEC]"));
  }
  auto trace = planner::ParseTraceJson(text);
  if (!trace.ok()) {
    return absl::Status(trace.status().code(), absl::StrCat(path, ": ", trace.status().message()));
  }
  return trace;
}

absl::StatusOr<planner::Layout> LoadLayoutFile(const std::string& path) {
  CRAFT_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto layout = planner::ParseLayoutJson(text);
  if (!layout.ok()) {
    return absl::Status(layout.status().code(),
                        absl::StrCat(path, ": ", layout.status().message()));
  }
  return layout;
}

}  // namespace craft::ctl
