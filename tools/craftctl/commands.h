// craftctl's subcommands. Each takes the arguments after its name and
// returns the process exit code; errors go to stderr.
#ifndef CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_
#define CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace craft::ctl {

// craftctl plan: one algorithm's layout as JSON (craft or sglang format).
absl::Status RunPlan(const std::vector<std::string>& argv);
// craftctl eval: several algorithms replayed on the same loads, as a table.
absl::Status RunEval(const std::vector<std::string>& argv);
// craftctl synth: a seeded synthetic trace with per-window samples.
absl::Status RunSynth(const std::vector<std::string>& argv);

// Planner queries over gRPC (--planner HOST:PORT): layout, agents, explain,
// replan, watch.
bool IsQueryCommand(const std::string& command);
absl::Status RunQuery(const std::string& command, const std::vector<std::string>& argv);

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_
