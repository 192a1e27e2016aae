// craft-local-cluster as the scripts use it: a tiny insecure CPU cluster,
// its description, a planner that answers, a restart by command, and SIGTERM
// leaving no process behind.
#include <signal.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/runfiles.h"
#include "craft/v1/placement.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tools/local_cluster/process.h"

namespace craft::local_cluster {
namespace {

// The command line of a running process, its arguments joined by spaces.
std::string CommandLine(const std::string& pid) {
  std::ifstream file("/proc/" + pid + "/cmdline");
  const std::string raw((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  return absl::StrReplaceAll(raw, {{std::string(1, '\0'), " "}});
}

bool Gone(const std::string& pid) { return ::kill(std::stoi(pid), 0) != 0 && errno == ESRCH; }

TEST(CraftLocalClusterTest, StartsDescribesRestartsAndStopsEverything) {
  // TEST_TMPDIR is long: the agent's socket must go elsewhere.
  const std::string dir = TempDir("cluster");
  const std::string commands = TempDir("commands") + "/stdin";
  std::ofstream(commands) << "restart worker 1 --seed=11\n";
  const std::vector<std::string> flags = {Runfile("tools/local_cluster/craft-local-cluster"),
                                          "--insecure",
                                          "--commands",
                                          "--dir=" + dir,
                                          "--nodes=1",
                                          "--gpus_per_node=2",
                                          "--num_layers=2",
                                          "--num_experts=8",
                                          "--top_k=2",
                                          "--window_ms=200",
                                          "--",
                                          "worker0:--seed=5"};
  // The launcher reads its commands from the file (Process gives /dev/null).
  std::vector<std::string> args = {"-c", "exec \"$0\" \"$@\" < " + commands};
  args.insert(args.end(), flags.begin(), flags.end());
  absl::StatusOr<Process> launcher = Process::Start("/bin/sh", args, dir + "/launcher.log");
  ASSERT_TRUE(launcher.ok()) << launcher.status();

  std::map<std::string, std::string> description;
  ASSERT_TRUE(WaitFor(
      [&] {
        // The restart rewrites the description: wait for its answer first.
        if (launcher->Log().find("\nok\n") == std::string::npos) return !launcher->Running();
        description = ReadKeyValueFile(dir + "/cluster.env").value_or(description);
        return true;
      },
      absl::Seconds(90)));
  ASSERT_TRUE(launcher->Running()) << launcher->Log();
  ASSERT_FALSE(description.empty()) << launcher->Log();
  EXPECT_EQ(description["dir"], dir);
  EXPECT_EQ(description["gpus"], "2");
  EXPECT_EQ(description["insecure"], "true");
  EXPECT_EQ(description["planner_address"],
            absl::StrCat("127.0.0.1:", description["planner_grpc_port"]));
  EXPECT_NE(description["agent0_socket"].rfind(dir, 0), 0u) << "a socket path too long";
  const std::vector<std::string> names = {"planner", "agent0", "worker0", "worker1"};
  for (const std::string& name : names) {
    ASSERT_FALSE(description[name + "_pid"].empty()) << name;
    EXPECT_FALSE(Gone(description[name + "_pid"])) << name;
  }
  // The extra flag from the command line, and the one from the restart.
  EXPECT_NE(CommandLine(description["worker0_pid"]).find("--seed=5"), std::string::npos);
  EXPECT_NE(CommandLine(description["worker1_pid"]).find("--seed=11"), std::string::npos);

  auto placement = craft::v1::PlacementService::NewStub(
      grpc::CreateChannel(description["planner_address"], grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  craft::v1::LayoutStatus layout;
  const grpc::Status answered = placement->GetLayout(&context, {}, &layout);
  ASSERT_TRUE(answered.ok()) << answered.error_message();
  EXPECT_EQ(layout.committed().version(), "0.0");

  absl::StatusOr<int> stopped = launcher->Stop(SIGTERM, absl::Seconds(30));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(ShellExitCode(*stopped), 0) << launcher->Log();
  for (const std::string& name : names) {
    EXPECT_TRUE(Gone(description[name + "_pid"])) << name;
    EXPECT_NE(launcher->Log().find(name + ": exit status 0 after "), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace craft::local_cluster
