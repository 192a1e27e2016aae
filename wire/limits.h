// Sizes the wire contract fixes for fields that the planner, the agent and the
// worker all check: one definition, so that no service takes what another
// refuses (a version the agent keeps but the planner rejects would get every
// hello of that node refused).
#ifndef CRAFT_WIRE_LIMITS_H_
#define CRAFT_WIRE_LIMITS_H_

#include <cstddef>

namespace craft {

// The size of a non-empty transfer_group_id (GpuInfo, WorkerHello, Prepare):
// an ncclUniqueId (NCCL_UNIQUE_ID_BYTES) made by global rank 0 and relayed,
// unread, by the agent and the planner to every rank.
inline constexpr size_t kTransferGroupIdBytes = 128;

// The longest transfer_endpoint (WorkerHello, GpuInfo) any service takes: a
// DNS name, ':', a port. The agent relays it to the planner, which names it in
// the Prepares of every GPU that fetches from it.
inline constexpr size_t kMaxEndpointBytes = 261;

// The longest layout version any message may carry (longer is
// INVALID_ARGUMENT). Versions end up in logs, acks, metrics labels and the
// state files; wire/version.h says what one is.
inline constexpr size_t kMaxVersionBytes = 128;

}  // namespace craft

#endif  // CRAFT_WIRE_LIMITS_H_
