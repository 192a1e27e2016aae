// Deterministic expert contents and the expert checksum, shared bit for bit by
// the CUDA kernels and their CPU references.
//
// Contents. Element i of logical expert e of layer l is a bf16 drawn from
// Mix64(ExpertKey(l, e) ^ (i * kGolden)): a random sign and mantissa with an
// exponent in [2^-7, 2^-4), so values are finite, non-zero and GEMMs over
// them cannot overflow. Every party (a test, the receiving GPU, the planner)
// can therefore tell what an expert's bytes must be without seeing them.
//
// Checksum. The buffer is read as little-endian 64-bit words w_i; then
//   checksum = Mix64(Mix64(bytes) ^ sum_i Mix64(w_i + (i + 1) * kGolden))   (mod 2^64).
// Each term is keyed by its position, so swapped, shifted or truncated data
// changes it, and the sum is associative and commutative, so a GPU may reduce
// the terms in any order (per thread, per warp, per block, then atomically)
// and still get the same bits. It detects corruption, not tampering: it is not
// cryptographic. Random corruption escapes it with probability about 2^-64.
//
// Pure functions: thread-safe.
#ifndef CRAFT_GPU_WORKER_CUDA_EXPERT_HASH_H_
#define CRAFT_GPU_WORKER_CUDA_EXPERT_HASH_H_

#include <cstdint>

#include "gpu_worker/cuda/host_device.h"
#include "gpu_worker/random.h"

namespace craft::gpu {

inline constexpr uint64_t kGolden = gpu_worker::kGoldenGamma;
using gpu_worker::Mix64;

// The fill key of logical expert `expert` of `layer`.
CRAFT_HOST_DEVICE inline uint64_t ExpertKey(int layer, int expert) {
  return Mix64(((static_cast<uint64_t>(static_cast<uint32_t>(layer)) << 32) |
                static_cast<uint32_t>(expert)) +
               kGolden);
}

// bf16 bits of element `index` of the expert with `key`.
CRAFT_HOST_DEVICE inline uint16_t FillElement(uint64_t key, uint64_t index) {
  const uint64_t h = Mix64(key ^ (index * kGolden));
  const uint32_t sign = static_cast<uint32_t>(h >> 63);
  const uint32_t exponent = 120 + static_cast<uint32_t>((h >> 8) & 3);  // 2^-7 .. 2^-4
  const uint32_t mantissa = static_cast<uint32_t>(h & 0x7F);
  return static_cast<uint16_t>((sign << 15) | (exponent << 7) | mantissa);
}

// The 64-bit word `word` of the expert with `key`: elements 4 * word .. +3,
// the first in the low bits (little-endian memory order).
CRAFT_HOST_DEVICE inline uint64_t FillWord(uint64_t key, uint64_t word) {
  uint64_t w = 0;
  for (int j = 0; j < 4; ++j) {
    w |= static_cast<uint64_t>(FillElement(key, 4 * word + j)) << (16 * j);
  }
  return w;
}

// Word `index`'s contribution to the checksum.
CRAFT_HOST_DEVICE inline uint64_t ChecksumTerm(uint64_t word, uint64_t index) {
  return Mix64(word + (index + 1) * kGolden);
}

// The checksum from the sum of all terms and the buffer's length.
CRAFT_HOST_DEVICE inline uint64_t FinishChecksum(uint64_t term_sum, uint64_t bytes) {
  return Mix64(Mix64(bytes) ^ term_sum);
}

// CPU references (single-threaded; meant for tests and small buffers).

// The checksum of `bytes` bytes at `data`; `bytes` must be a multiple of 8.
uint64_t HostChecksum(const void* data, int64_t bytes);

// Writes the contents of expert `expert` of `layer` (`elements` bf16 values)
// to `out`.
void HostFillExpert(int layer, int expert, int64_t elements, uint16_t* out);

// The checksum an expert of `elements` bf16 values (a multiple of 4) has once
// filled, without materialising it.
uint64_t HostExpectedChecksum(int layer, int expert, int64_t elements);

}  // namespace craft::gpu

#endif  // CRAFT_GPU_WORKER_CUDA_EXPERT_HASH_H_
