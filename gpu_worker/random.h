// Seeded, platform-independent pseudo-random numbers for the worker.
//
// Every party (workers, tests, tools) must derive the same expert weights and
// the same token routing from the same seeds, so nothing here uses <random>
// distributions (whose output the standard does not fix) or floating point.
//
//   SplitMix64 rng(HashWords({seed, window_id, layer}));
//   uint64_t draw = rng.Below(n);  // uniform in [0, n)
//
// Thread-safety: HashWords and Mix64 are pure; a SplitMix64 is a small value
// type that is not synchronised (one per thread or per stream).
#ifndef CRAFT_GPU_WORKER_RANDOM_H_
#define CRAFT_GPU_WORKER_RANDOM_H_

#include <cstdint>
#include <initializer_list>

#include "gpu_worker/cuda/host_device.h"

namespace craft::gpu_worker {

inline constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;

// SplitMix64's finaliser: a bijective mix of all 64 bits. Host and device
// (the CUDA kernels derive expert contents and replica choices from it too).
CRAFT_HOST_DEVICE inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A hash of a short sequence of integers (seeds, ids, indices): each word is
// folded in through Mix64, so sequences differing in any word or in order
// give unrelated values.
// HashWords one word at a time, for device code (no initializer_list there):
// HashWords({a, b}) == HashStep(HashStep(kHashWordsSeed, a), b).
inline constexpr uint64_t kHashWordsSeed = 0x6a09e667f3bcc909ULL;
CRAFT_HOST_DEVICE inline uint64_t HashStep(uint64_t h, uint64_t word) {
  return Mix64(h + kGoldenGamma + word);
}

inline uint64_t HashWords(std::initializer_list<uint64_t> words) {
  uint64_t h = kHashWordsSeed;
  for (uint64_t w : words) h = HashStep(h, w);
  return h;
}

// Steele, Lea and Flood's SplitMix64 generator: a 64-bit state advanced by
// the golden gamma and finalised by Mix64.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += kGoldenGamma;
    return Mix64(state_);
  }

  // Uniform in [0, n) for n > 0, by multiply-shift (bias below n / 2^64).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace craft::gpu_worker

#endif  // CRAFT_GPU_WORKER_RANDOM_H_
