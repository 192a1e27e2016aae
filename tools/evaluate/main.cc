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

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tools/craftctl/args.h"
#include "tools/evaluate/report.h"
#include "tools/evaluate/scale.h"
#include "tools/evaluate/workloads.h"

namespace craft::evaluate {
namespace {

constexpr char kUsage[] = R"(usage: craft-evaluate --out DIR [--scale full|small] [--traces DIR]

  --out DIR      where the CSVs, Markdown tables and values.tsv go (created if missing)
  --scale S      full: the published shapes (a few minutes on 2 cores);
                 small: tiny shapes for CI (seconds). Default: full
  --traces DIR   recorded aggregate counts (counts235b.json, ...); rows of traces
                 that are not there are skipped
)";

struct Flags {
  std::string out;
  std::string traces;
  Scale scale = Scale::kFull;
};

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& argv) {
  CRAFT_ASSIGN_OR_RETURN(ctl::Args args, ctl::Args::Parse(argv, {}));
  Flags flags;
  CRAFT_ASSIGN_OR_RETURN(flags.out, args.String("out"));
  flags.traces = args.StringOr("traces", "");
  CRAFT_ASSIGN_OR_RETURN(flags.scale, ParseScale(args.StringOr("scale", "full")));
  CRAFT_RETURN_IF_ERROR(args.CheckAllUsed());
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

absl::Status Run(const std::vector<std::string>& argv) {
  CRAFT_ASSIGN_OR_RETURN(Flags flags, ParseFlags(argv));
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
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << craft::evaluate::kUsage;
    return 0;
  }
  const absl::Status status = craft::evaluate::Run(args);
  if (!status.ok()) {
    std::cerr << "craft-evaluate: error: " << status.message() << "\n" << craft::evaluate::kUsage;
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
