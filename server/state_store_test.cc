#include "server/state_store.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "common/fnv1a.h"
#include "gtest/gtest.h"
#include "server/internal/test_support.h"

namespace craft::server {
namespace {

using ::craft::server::testing::SamplePlannerState;

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::string ReadAll(const std::string& path) { return ReadFileToString(path).value_or(""); }

void WriteAll(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

TEST(FileStateStoreTest, MissingFileLoadsAsNothing) {
  FileStateStore store(TempPath("missing.state"));
  absl::StatusOr<std::optional<PlannerState>> state = store.Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->has_value());
}

TEST(FileStateStoreTest, SaveThenLoadRoundTrips) {
  const std::string path = TempPath("roundtrip.state");
  FileStateStore store(path);
  ASSERT_TRUE(store.Save(SamplePlannerState(3, 17)).ok());
  PlannerState latest = SamplePlannerState(4, 18);
  latest.previous = SamplePlannerState(3, 17).committed;
  ASSERT_TRUE(store.Save(latest).ok());  // replaces atomically
  absl::StatusOr<std::optional<PlannerState>> state = FileStateStore(path).Load();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(state->has_value());
  EXPECT_EQ((*state)->epoch, 4);
  EXPECT_EQ((*state)->seq, 18);
  EXPECT_EQ((*state)->committed.SerializeAsString(), latest.committed.SerializeAsString());
  ASSERT_TRUE((*state)->previous.has_value());
  EXPECT_EQ((*state)->previous->version(), "3.17");
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0) << "temporary file left behind";
}

TEST(FileStateStoreTest, PreviousLayoutIsOptional) {
  const std::string path = TempPath("no_previous.state");
  ASSERT_TRUE(FileStateStore(path).Save(SamplePlannerState(1, 0)).ok());
  absl::StatusOr<std::optional<PlannerState>> state = FileStateStore(path).Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE((*state)->previous.has_value());
}

TEST(FileStateStoreTest, CorruptionIsDataLossNotAFreshStart) {
  const std::string path = TempPath("corrupt.state");
  FileStateStore store(path);
  ASSERT_TRUE(store.Save(SamplePlannerState(2, 5)).ok());
  const std::string good = ReadAll(path);

  std::string flipped = good;
  flipped.back() ^= 0x55;  // a layout byte: checksum mismatch
  WriteAll(path, flipped);
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kDataLoss);

  WriteAll(path, good.substr(0, good.size() - 3));  // truncated
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kDataLoss);

  WriteAll(path, "not a state file\n");
  EXPECT_EQ(store.Load().status().code(), absl::StatusCode::kDataLoss);
}

TEST(FileStateStoreTest, AnEditedHeaderIsCaught) {
  const std::string path = TempPath("edited.state");
  FileStateStore store(path);
  ASSERT_TRUE(store.Save(SamplePlannerState(7, 5)).ok());
  const std::string good = ReadAll(path);
  // The epoch edited down (a version could be minted again): checksum.
  std::string lowered = good;
  lowered.replace(lowered.find("epoch 7"), 7, "epoch 6");
  WriteAll(path, lowered);
  absl::Status status = store.Load().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("header checksum mismatch"), std::string::npos) << status;
}

TEST(FileStateStoreTest, CountersOutOfRangeOrBehindTheirVersionsAreRefused) {
  const std::string path = TempPath("counters.state");
  FileStateStore store(path);
  PlannerState overflowing = SamplePlannerState(7, 5);
  overflowing.epoch = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(store.Save(overflowing).code(), absl::StatusCode::kInvalidArgument);
  PlannerState behind = SamplePlannerState(7, 5);
  behind.seq = 4;  // 7.5 is committed: the next apply would mint 7.5 again
  const absl::Status refused = store.Save(behind);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("minted twice"), std::string::npos) << refused;
  EXPECT_FALSE(store.Load()->has_value()) << "nothing was written";
}

TEST(FileStateStoreTest, AVersionOneFileIsStillRead) {
  // What the previous release wrote: no header checksum.
  const std::string path = TempPath("v1.state");
  const PlannerState state = SamplePlannerState(3, 2);
  const std::string committed = state.committed.SerializeAsString();
  WriteAll(path,
           absl::StrCat("craft-planner-state 1\nepoch 3\nseq 2\ncommitted ", committed.size(), " ",
                        Fnv1a64(committed), "\nprevious 0 ", Fnv1a64(""), "\n", committed));
  absl::StatusOr<std::optional<PlannerState>> loaded = FileStateStore(path).Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->committed.version(), "3.2");
}

TEST(FileStateStoreTest, UnwritableDirectoryFailsCleanly) {
  FileStateStore store("/nonexistent-dir/planner.state");
  EXPECT_FALSE(store.Save(SamplePlannerState(1, 0)).ok());
}

TEST(InMemoryStateStoreTest, KeepsTheLastSaveAndCanFail) {
  InMemoryStateStore store;
  EXPECT_FALSE(store.Load()->has_value());
  ASSERT_TRUE(store.Save(SamplePlannerState(1, 2)).ok());
  store.set_fail_saves(true);
  EXPECT_FALSE(store.Save(SamplePlannerState(1, 3)).ok());
  EXPECT_EQ((*store.Load())->seq, 2);
  EXPECT_EQ(store.saves(), 1);
}

}  // namespace
}  // namespace craft::server
