#include "common/file_io.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace craft {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/file_io_test_" + name;
}

std::string WriteTemp(const std::string& name, const std::string& content) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return path;
}

TEST(ReadFileToStringTest, EmptyFile) {
  absl::StatusOr<std::string> text = ReadFileToString(WriteTemp("empty", ""));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "");
}

TEST(ReadFileToStringTest, BinaryWithNuls) {
  const std::string bytes("a\0b\0\0\xff\n\r", 8);
  absl::StatusOr<std::string> text = ReadFileToString(WriteTemp("binary", bytes));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, bytes);
}

TEST(ReadFileToStringTest, TenMegabytesExactly) {
  std::string bytes(10 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + (i >> 16));
  const std::string path = WriteTemp("ten_mb", bytes);
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->size(), bytes.size());
  EXPECT_TRUE(*text == bytes);
  // A limit of exactly the size is not exceeded.
  text = ReadFileToString(path, 10 << 20);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->size(), bytes.size());
}

TEST(ReadFileToStringTest, FromAnOffset) {
  const std::string path = WriteTemp("offset", "0123456789");
  EXPECT_EQ(ReadFileToString(path, 100, 0).value(), "0123456789");
  EXPECT_EQ(ReadFileToString(path, 100, 4).value(), "456789");
  EXPECT_EQ(ReadFileToString(path, 100, 10).value(), "");
  // The limit bounds what is returned, not the whole file.
  EXPECT_EQ(ReadFileToString(path, 6, 4).value(), "456789");
  EXPECT_EQ(ReadFileToString(path, 5, 4).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ReadFileToStringTest, OffsetBeyondTheEndIsEmpty) {
  absl::StatusOr<std::string> text = ReadFileToString(WriteTemp("short", "abc"), 10, 1000);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "");
}

TEST(ReadFileToStringTest, MissingFileIsNotFoundWithThePath) {
  const std::string path = TempPath("does_not_exist");
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_EQ(text.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(text.status().message(), path)) << text.status();
  EXPECT_TRUE(absl::StrContains(text.status().message(), "No such file")) << text.status();
}

TEST(ReadFileToStringTest, DirectoryIsAnError) {
  const std::string path = TempPath("dir");
  ::mkdir(path.c_str(), 0755);
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kFailedPrecondition) << text.status();
  EXPECT_TRUE(absl::StrContains(text.status().message(), path)) << text.status();
}

TEST(ReadFileToStringTest, OverTheLimitIsResourceExhausted) {
  const std::string path = WriteTemp("big", std::string(1000, 'x'));
  absl::StatusOr<std::string> text = ReadFileToString(path, 999);
  ASSERT_EQ(text.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(text.status().message(), path + " is 1000 bytes, more than the limit of 999");
}

// /proc files stat as 0 bytes: the limit is enforced while reading too.
TEST(ReadFileToStringTest, SizeUnknownUntilReadStillBoundedAndRead) {
  absl::StatusOr<std::string> text = ReadFileToString("/proc/self/status");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StrContains(*text, "Name:"));
  text = ReadFileToString("/proc/self/status", 10);
  ASSERT_EQ(text.status().code(), absl::StatusCode::kResourceExhausted) << text.status();
  EXPECT_TRUE(absl::StrContains(text.status().message(), "at least")) << text.status();
}

TEST(ReadFileToStringTest, UnreadableIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  const std::string path = WriteTemp("unreadable", "secret");
  ::chmod(path.c_str(), 0);
  EXPECT_EQ(ReadFileToString(path).status().code(), absl::StatusCode::kPermissionDenied);
  ::chmod(path.c_str(), 0644);
}

}  // namespace
}  // namespace craft
