// The persisted agent state and the socket-file helper: both are small file
// system seams, tested against a real temporary directory.
#include "agent/state_file.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "agent/socket_file.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(AgentStateTest, SerializeParseRoundTrip) {
  const AgentState state{12, "12.7", std::nullopt, std::nullopt};
  absl::StatusOr<AgentState> parsed = ParseAgentState(SerializeAgentState(state));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, state);
}

TEST(AgentStateTest, TheCommittedLayoutRoundTrips) {
  AgentState state{5, "5.3", std::nullopt, std::nullopt};
  craft::v1::Layout layout;
  layout.set_version("5.3");
  layout.set_num_experts(4);
  layout.set_num_gpus(2);
  layout.set_num_nodes(1);
  state.committed_layout = layout;
  absl::StatusOr<AgentState> parsed = ParseAgentState(SerializeAgentState(state));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, state);
  ASSERT_TRUE(parsed->committed_layout.has_value());
  EXPECT_EQ(parsed->committed_layout->num_gpus(), 2);
}

TEST(AgentStateTest, ALayoutOfAnotherVersionOrGarbageIsRefused) {
  AgentState state{5, "5.3", craft::v1::Layout(), std::nullopt};
  state.committed_layout->set_version("5.2");
  absl::StatusOr<AgentState> parsed = ParseAgentState(SerializeAgentState(state));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("5.2"), std::string::npos) << parsed.status();
  EXPECT_FALSE(ParseAgentState("committed_version=1.1\ncommitted_layout=@@@not base64\n").ok());
}

TEST(AgentStateTest, ThePlannersModelRoundTripsAndOldFilesStillRead) {
  AgentState state{5, "5.3", std::nullopt, craft::v1::ModelShape()};
  state.model->set_num_layers(58);
  state.model->set_num_experts(256);
  state.model->set_top_k(8);
  state.model->set_bytes_per_expert(88080384);
  const std::string text = SerializeAgentState(state);
  EXPECT_NE(text.find("model=58,256,8,88080384\n"), std::string::npos) << text;
  absl::StatusOr<AgentState> parsed = ParseAgentState(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, state);
  // A state file written before the model was kept: no model, no error.
  parsed = ParseAgentState("highest_epoch=5\ncommitted_version=5.3\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->model.has_value());
  for (const char* bad : {"model=58,256,8", "model=0,256,8,1", "model=58,256,-1,1",
                          "model=58,256,8,x", "model=58,256,8,1,2"}) {
    EXPECT_EQ(ParseAgentState(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(AgentStateTest, ParseRejectsGarbage) {
  EXPECT_FALSE(ParseAgentState("highest_epoch=-1\n").ok());
  EXPECT_FALSE(ParseAgentState("highest_epoch=abc\n").ok());
  EXPECT_FALSE(ParseAgentState("no equals sign\n").ok());
  EXPECT_FALSE(ParseAgentState("color=blue\n").ok());
  EXPECT_TRUE(ParseAgentState("").ok());
}

TEST(FileStateStoreTest, MissingFileIsAFreshStart) {
  FileStateStore store(TempDir() + "/never_written_state");
  absl::StatusOr<AgentState> state = store.Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, AgentState{});
}

TEST(FileStateStoreTest, SaveThenLoadInANewStore) {
  const std::string path = TempDir() + "/agent_state";
  {
    FileStateStore store(path);
    ASSERT_TRUE(store.Save({3, "3.1", std::nullopt, std::nullopt}).ok());
    ASSERT_TRUE(store.Save({4, "4.2", std::nullopt, std::nullopt}).ok());
  }
  FileStateStore reopened(path);
  absl::StatusOr<AgentState> state = reopened.Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, (AgentState{4, "4.2", std::nullopt, std::nullopt}));
  // No temporary file is left behind.
  EXPECT_NE(::access((path + ".tmp." + std::to_string(::getpid())).c_str(), F_OK), 0);
}

TEST(FileStateStoreTest, CorruptFileIsAnError) {
  const std::string path = TempDir() + "/corrupt_state";
  std::ofstream(path) << "highest_epoch=x\n";
  FileStateStore store(path);
  absl::StatusOr<AgentState> state = store.Load();
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(state.status().message().find("corrupt_state"), std::string::npos);
}

TEST(SocketFileTest, RemovesAStaleSocketButNotOtherFiles) {
  // Bazel's TEST_TMPDIR is too long for sockaddr_un: use a short private dir.
  char dir_template[] = "/tmp/craft_agent_XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string regular = dir + "/not_a_socket";
  std::ofstream(regular) << "keep me";
  EXPECT_EQ(PrepareSocketPath(regular).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(::access(regular.c_str(), F_OK), 0);

  EXPECT_EQ(PrepareSocketPath("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrepareSocketPath("/" + std::string(200, 'x')).code(),
            absl::StatusCode::kInvalidArgument);

  // A socket bound but never listened on (its process died): stale.
  const std::string stale = dir + "/stale.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", stale.c_str());
  ::unlink(stale.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_TRUE(PrepareSocketPath(stale).ok());
  EXPECT_NE(::access(stale.c_str(), F_OK), 0);

  // A live listener is left alone.
  ::unlink(stale.c_str());
  const int live = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(::bind(live, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(live, 1), 0);
  EXPECT_EQ(PrepareSocketPath(stale).code(), absl::StatusCode::kFailedPrecondition);
  ::close(live);
  ::close(fd);
  RemoveSocketFile(stale);
  EXPECT_NE(::access(stale.c_str(), F_OK), 0);
  ::unlink(regular.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace craft::agent
