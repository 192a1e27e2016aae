#include "gpu_worker/expert_weights.h"

#include <string>

#include "gtest/gtest.h"

namespace craft::gpu_worker {
namespace {

TEST(Fnv1a64Test, MatchesPublishedVectors) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

TEST(Fnv1a64Test, HashesInPieces) { EXPECT_EQ(Fnv1a64("bar", Fnv1a64("foo")), Fnv1a64("foobar")); }

TEST(ExpertWeightsTest, AreDeterministicAndDistinctPerExpert) {
  EXPECT_EQ(ExpertWeights(3, 7, 4096), ExpertWeights(3, 7, 4096));
  EXPECT_NE(ExpertWeights(3, 7, 4096), ExpertWeights(3, 8, 4096));
  EXPECT_NE(ExpertWeights(3, 7, 4096), ExpertWeights(4, 7, 4096));
  EXPECT_NE(ExpertWeights(0, 1, 64), ExpertWeights(1, 0, 64));
}

TEST(ExpertWeightsTest, ShorterWeightsArePrefixes) {
  const std::string full = ExpertWeights(2, 5, 1000);
  EXPECT_EQ(ExpertWeights(2, 5, 13), full.substr(0, 13));
}

TEST(ExpertWeightsTest, ExpectedChecksumIsTheChecksumOfTheWeights) {
  for (int64_t bytes : {1, 7, 8, 4095, 4096, 4097, 10000}) {
    EXPECT_EQ(ExpectedChecksum(1, 2, bytes), Fnv1a64(ExpertWeights(1, 2, bytes))) << bytes;
  }
  EXPECT_NE(ExpectedChecksum(1, 2, 4096), ExpectedChecksum(1, 3, 4096));
}

// The weights are a contract between processes (and any tool or backend that
// checks them): pinned, with values from an independent implementation of
// the definition in expert_weights.h (gpu_worker/README.md has it in Python).
TEST(ExpertWeightsTest, ArePinned) {
  EXPECT_EQ(ExpectedChecksum(0, 0, 4096), 10178260558650953679ULL);
  EXPECT_EQ(ExpectedChecksum(57, 255, 4096), 1048477166361183712ULL);
}

}  // namespace
}  // namespace craft::gpu_worker
