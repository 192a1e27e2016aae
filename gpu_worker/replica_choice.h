// Which replica of an expert serves one router choice: the single rule of
// craft, shared by the CPU routing table (routing.h), the CUDA counting kernel
// (cuda/routing.h) and their references, so that a window's counts are the
// same bits whichever backend made them.
//
// Choice `k` of token `token` in `layer` during window `window_id` goes to
// replica HashWords({0x726f757465, window_id, layer, token, k}) mod
// replica_count (replicas in slot order). A pure function of the token's
// identity, like vLLM's pick from the top-k position: every rank routing the
// same tokens with the same layout picks the same replica (SGLang's
// "rank-invariant dispatch"; a rank that chose differently would double- or
// under-count), and a hot expert's tokens spread evenly over its replicas
// whatever rank k they gave it (a rule keyed by k alone would send every
// token that ranked the expert first to one replica).
//
// Pure and header-only: safe on host and device, from any thread.
#ifndef CRAFT_GPU_WORKER_REPLICA_CHOICE_H_
#define CRAFT_GPU_WORKER_REPLICA_CHOICE_H_

#include <cstdint>

#include "gpu_worker/cuda/host_device.h"
#include "gpu_worker/random.h"

namespace craft::gpu_worker {

inline constexpr uint64_t kRoutingDomain = 0x726f757465ULL;  // "route"

// An index in [0, replica_count); 0 when replica_count <= 1.
CRAFT_HOST_DEVICE inline int ChooseReplica(int64_t window_id, int layer, int64_t token, int k,
                                           int replica_count) {
  if (replica_count <= 1) return 0;
  uint64_t h = HashStep(kHashWordsSeed, kRoutingDomain);
  h = HashStep(h, static_cast<uint64_t>(window_id));
  h = HashStep(h, static_cast<uint64_t>(layer));
  h = HashStep(h, static_cast<uint64_t>(token));
  h = HashStep(h, static_cast<uint64_t>(k));
  return static_cast<int>(h % static_cast<uint64_t>(replica_count));
}

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_REPLICA_CHOICE_H_
