#include "gpu_worker/cuda/routing.h"

#include <vector>

#include "gtest/gtest.h"

namespace craft::gpu {
namespace {

TEST(RoutingTableTest, FromPhy2LogListsReplicasInSlotOrder) {
  // Two GPUs: slots 0-2 on GPU 0, 3-5 on GPU 1; expert 0 has three replicas.
  const absl::StatusOr<RoutingTable> table = RoutingTable::FromPhy2Log({0, 1, 0, 2, 3, 0}, 4);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->replica_begin, (std::vector<int32_t>{0, 3, 4, 5, 6}));
  EXPECT_EQ(table->replica_slots, (std::vector<int32_t>{0, 2, 5, 1, 3, 4}));
  EXPECT_EQ(table->num_experts(), 4);
  EXPECT_EQ(table->num_slots(), 6);
}

TEST(RoutingTableTest, RejectsBadIdsAndMissingExperts) {
  EXPECT_FALSE(RoutingTable::FromPhy2Log({0, 4}, 4).ok());
  EXPECT_FALSE(RoutingTable::FromPhy2Log({0, -1}, 4).ok());
  EXPECT_FALSE(RoutingTable::FromPhy2Log({0, 1, 2}, 4).ok());  // expert 3 missing
  EXPECT_FALSE(RoutingTable::FromPhy2Log({}, 0).ok());
}

TEST(CountReferenceTest, RoutesWithTheWorkersReplicaChoiceAndDropsInvalidIds) {
  const RoutingTable table = *RoutingTable::FromPhy2Log({0, 1, 0, 2}, 3);
  // top-2; every token picks expert 0 first.
  const std::vector<int32_t> ids = {0, 1, 0, 2, 0, -1, 0, 7, 0, 1};
  std::vector<uint64_t> counts(4, 0);
  uint64_t dropped = 0;
  std::vector<int32_t> phy(ids.size());
  const int64_t window_id = 77;
  const int layer = 3;
  CountReference(ids, 2, window_id, layer, table, absl::MakeSpan(counts), &dropped,
                 absl::MakeSpan(phy));
  // Expert 0's replicas are slots 0 and 2; each token's first choice goes
  // where the shared rule sends it.
  const int32_t replicas[] = {0, 2};
  for (int token = 0; token < 5; ++token) {
    EXPECT_EQ(phy[2 * token],
              replicas[gpu_worker::ChooseReplica(window_id, layer, token, /*k=*/0, 2)]);
  }
  EXPECT_EQ(counts[0] + counts[2], 5u);
  EXPECT_EQ(counts[1], 2u);
  EXPECT_EQ(counts[3], 1u);
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(phy[3], 3);
  EXPECT_EQ(phy[5], -1);
  EXPECT_EQ(phy[7], -1);
}

}  // namespace
}  // namespace craft::gpu
