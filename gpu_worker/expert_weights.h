// Deterministic expert weights and their checksum.
//
// The CPU backend has no checkpoint to load, so the bytes of expert `e` of
// layer `l` are a pure function of (l, e, size): a SplitMix64 stream seeded by
// HashWords({kWeightsDomain, l, e}), each 64-bit draw written as 8 bytes,
// least significant first. Every party can therefore compute the checksum an
// expert's weights must have, wherever they were copied from:
//
//   uint64_t want = ExpectedChecksum(layer, expert, bytes_per_expert);
//   if (Fnv1a64(received) != want) ...  // corrupted or wrong expert
//
// The checksum is FNV-1a, 64 bit (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3) over the bytes, as proto/README.md specifies.
//
// Thread-safety: pure functions.
#ifndef CRAFT_GPU_WORKER_EXPERT_WEIGHTS_H_
#define CRAFT_GPU_WORKER_EXPERT_WEIGHTS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/fnv1a.h"

namespace craft::gpu_worker {

using ::craft::Fnv1a64;
using ::craft::kFnv1a64OffsetBasis;

// Writes the first `out.size()` bytes of expert (layer, expert)'s weights.
void FillExpertWeights(int layer, int expert, absl::Span<char> out);

// The weights of expert (layer, expert), `bytes` long.
std::string ExpertWeights(int layer, int expert, int64_t bytes);

// Fnv1a64(ExpertWeights(layer, expert, bytes)), without materialising them.
uint64_t ExpectedChecksum(int layer, int expert, int64_t bytes);

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_EXPERT_WEIGHTS_H_
