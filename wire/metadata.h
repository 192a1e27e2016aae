// gRPC metadata keys of the wire contract, one definition for the planner
// that sets them and the clients that read them.
#ifndef CRAFT_WIRE_METADATA_H_
#define CRAFT_WIRE_METADATA_H_

namespace craft {

// High availability: the trailing-metadata key with which a follower planner
// names the leader's address when it refuses a call (UNAVAILABLE), so that
// agents and clients go there (proto/README.md, "High availability").
inline constexpr char kLeaderMetadataKey[] = "craft-leader";

}  // namespace craft

#endif  // CRAFT_WIRE_METADATA_H_
