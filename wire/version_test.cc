#include "wire/version.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace craft {
namespace {

TEST(VersionTest, MintsWhatParsesBack) {
  const Version minted(3, 17);
  EXPECT_EQ(minted.ToString(), "3.17");
  absl::StatusOr<Version> parsed = Version::Parse("3.17");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, minted);
  EXPECT_EQ(parsed->epoch(), 3);
  EXPECT_EQ(parsed->seq(), 17);
}

TEST(VersionTest, InitialIsZeroZero) {
  EXPECT_EQ(Version::Initial().ToString(), kInitialVersion);
  EXPECT_EQ(Version::Initial(), Version(0, 0));
  absl::StatusOr<Version> parsed = Version::Parse(kInitialVersion);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, Version::Initial());
}

TEST(VersionTest, TheLargestPartsRoundTrip) {
  const std::string largest = "9223372036854775807.9223372036854775807";
  absl::StatusOr<Version> parsed = Version::Parse(largest);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToString(), largest);
}

TEST(VersionTest, RefusesMalformed) {
  for (const char* text :
       {"",     ".",    "1",    "1.",   ".1",   "1..2", "1.2.3", "a.b",  "1.b", "v1.2", "-1.2",
        "1.-2", "+1.2", " 1.2", "1.2 ", "1 .2", "01.2", "1.02",  "00.0", "1,2", "0x1.2"}) {
    absl::StatusOr<Version> parsed = Version::Parse(text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << "'" << text << "'";
  }
  EXPECT_FALSE(Version::Parse(std::string("1\0.2", 4)).ok());
}

TEST(VersionTest, RefusesPartsBeyondInt64) {
  for (const char* text :
       {"9223372036854775808.1", "1.9223372036854775808", "99999999999999999999999.0"}) {
    EXPECT_EQ(Version::Parse(text).status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(VersionTest, RefusesMoreThanTheLimitBeforeLookingAtIt) {
  const std::string longest(kMaxVersionBytes, '1');
  absl::StatusOr<Version> at_limit = Version::Parse(longest);
  EXPECT_EQ(at_limit.status().code(), absl::StatusCode::kInvalidArgument);  // no '.'
  absl::StatusOr<Version> over = Version::Parse(std::string(kMaxVersionBytes + 1, '1'));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("longer than"), absl::string_view::npos) << over.status();
}

TEST(VersionTest, OrdersByEpochThenSeq) {
  EXPECT_LT(Version(1, 9), Version(1, 10));  // not as strings: "1.9" > "1.10"
  EXPECT_LT(Version(1, 100), Version(2, 0));
  EXPECT_LT(Version::Initial(), Version(1, 0));
  EXPECT_GT(Version(2, 1), Version(1, 5));
  EXPECT_LE(Version(4, 4), Version(4, 4));
  EXPECT_GE(Version(4, 4), Version(4, 4));
  EXPECT_NE(Version(4, 4), Version(4, 5));
}

TEST(VersionDeathTest, MintingANegativePartIsABug) {
  EXPECT_DEATH(Version(-1, 0), "check failed");
  EXPECT_DEATH(Version(1, -1), "check failed");
}

TEST(VersionOrInitialTest, EmptyIsTheInitialVersion) {
  EXPECT_EQ(VersionOrInitial(""), kInitialVersion);
  EXPECT_EQ(VersionOrInitial("2.7"), "2.7");
}

TEST(IsVersionNameTest, PrintableNonEmptyWithinTheLimit) {
  EXPECT_TRUE(IsVersionName("1.1"));
  EXPECT_TRUE(IsVersionName("canary-7"));  // a name: the agent does not read numbers
  EXPECT_TRUE(IsVersionName(std::string(kMaxVersionBytes, 'v')));
  EXPECT_FALSE(IsVersionName(""));
  EXPECT_FALSE(IsVersionName(std::string(kMaxVersionBytes + 1, 'v')));
  EXPECT_FALSE(IsVersionName("bad version"));
  EXPECT_FALSE(IsVersionName("1.1\n"));
}

}  // namespace
}  // namespace craft
