// craftctl's commands: what each does, the flags it takes and how its help
// reads (commands.cc), and the functions that run them on parsed flags
// (*_command.cc, query_commands.cc). Results go to stdout or --out, progress
// to stderr; an error comes back as a Status.
#ifndef CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_
#define CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tools/craftctl/command_line.h"

namespace craft::ctl {

// Every command, in the order `craftctl --help` lists them.
const std::vector<Command>& Commands();
// The command named `name`, or nullptr.
const Command* FindCommand(absl::string_view name);
// `craftctl --help`: the commands, one line each.
std::string Usage();

// craftctl plan: one algorithm's layout as JSON (craft or sglang format).
absl::Status RunPlan();
// craftctl eval: several algorithms replayed on the same loads, as a table.
absl::Status RunEval();
// craftctl synth: a seeded synthetic trace with per-window samples.
absl::Status RunSynth();

// Planner queries over gRPC (--planner HOST:PORT).
absl::Status RunLayout();
absl::Status RunAgents();
absl::Status RunExplain();
absl::Status RunReplan();
absl::Status RunWatch();
// grpc.health.v1 of any craft gRPC port (--target HOST:PORT).
absl::Status RunHealth();

}  // namespace craft::ctl

#endif  // CRAFT_TOOLS_CRAFTCTL_COMMANDS_H_
