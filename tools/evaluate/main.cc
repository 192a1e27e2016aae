// craft-evaluate: reproduces the CRAFT paper's claims with craft's planner on
// synthetic traces shaped like DeepSeek-R1 and Kimi-K2 and, when given, on
// recorded aggregate counts. Writes one CSV per experiment, Markdown tables
// and values.tsv into --out (scripts/evaluate.sh renders plots and
// docs/EVALUATION.md from them) and prints the summary tables.
//
//   craft-evaluate --out DIR [--scale full|small] [--traces DIR]
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "tools/evaluate/report.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/workloads.h"

ABSL_FLAG(std::string, out, "",
          "where the CSVs, Markdown tables and values.tsv go (created if missing); required");
ABSL_FLAG(std::string, scale, "full",
          "full: the published shapes (a few minutes on 2 cores); small: tiny shapes for CI "
          "(seconds)");
ABSL_FLAG(std::string, traces, "",
          "recorded aggregate counts (counts235b.json, ...); rows of traces that are not there are "
          "skipped");

namespace craft::evaluate {
namespace {

constexpr char kUsage[] =
    "craft-evaluate: the CRAFT paper's claims, reproduced with craft's planner\n\n"
    "usage: craft-evaluate --out DIR [--scale full|small] [--traces DIR]";

struct Flags {
  std::string out;
  std::string traces;
  Scale scale = Scale::kFull;
};

absl::StatusOr<Flags> ReadFlags() {
  Flags flags;
  flags.out = absl::GetFlag(FLAGS_out);
  if (flags.out.empty()) return absl::InvalidArgumentError("--out is required");
  flags.traces = absl::GetFlag(FLAGS_traces);
  CRAFT_ASSIGN_OR_RETURN(flags.scale, ParseScale(absl::GetFlag(FLAGS_scale)));
  return flags;
}

absl::StatusOr<std::vector<Workload>> LoadWorkloads(const ScaleConfig& config, const Flags& flags) {
  CRAFT_ASSIGN_OR_RETURN(std::vector<Workload> workloads, SyntheticWorkloads(config));
  if (flags.traces.empty()) {
    std::cerr << "no --traces: recorded traces skipped\n";
    return workloads;
  }
  std::vector<std::string> skipped;
  CRAFT_ASSIGN_OR_RETURN(std::vector<Workload> real, RealWorkloads(config, flags.traces, skipped));
  for (const std::string& path : skipped) std::cerr << "not found, skipped: " << path << "\n";
  for (Workload& workload : real) workloads.push_back(std::move(workload));
  return workloads;
}

absl::Status Run() {
  CRAFT_ASSIGN_OR_RETURN(Flags flags, ReadFlags());
  std::error_code error;
  std::filesystem::create_directories(flags.out, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create --out ", flags.out, ": ", error.message()));
  }
  const ScaleConfig config = ConfigFor(flags.scale);
  const auto start = std::chrono::steady_clock::now();
  CRAFT_ASSIGN_OR_RETURN(std::vector<Workload> workloads, LoadWorkloads(config, flags));
  std::cerr << "workloads ready\n";
  CRAFT_ASSIGN_OR_RETURN(Results results, RunAll(config, std::move(workloads)));
  CRAFT_RETURN_IF_ERROR(WriteReport(config, results, flags.out, &std::cout));
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  std::cerr << "craft-evaluate: done in " << static_cast<int>(elapsed.count()) << " s, wrote "
            << flags.out << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace craft::evaluate

int main(int argc, char** argv) {
  const std::vector<char*> positional = craft::ParseFlags(argc, argv, craft::evaluate::kUsage);
  absl::Status status = absl::OkStatus();
  if (positional.size() > 1) {
    status = absl::InvalidArgumentError(absl::StrCat("unexpected argument '", positional[1], "'"));
  }
  if (status.ok()) status = craft::evaluate::Run();
  if (!status.ok()) {
    std::cerr << "craft-evaluate: error: " << status.message() << "\n"
              << craft::evaluate::kUsage << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
