#include "gpu_worker/cuda/expert_hash.h"

#include <cstring>

namespace craft::gpu {

uint64_t HostChecksum(const void* data, int64_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t sum = 0;
  for (int64_t i = 0; i < bytes / 8; ++i) {
    uint64_t word;
    std::memcpy(&word, p + 8 * i, sizeof(word));  // little-endian hosts only (x86-64, arm64)
    sum += ChecksumTerm(word, static_cast<uint64_t>(i));
  }
  return FinishChecksum(sum, static_cast<uint64_t>(bytes));
}

void HostFillExpert(int layer, int expert, int64_t elements, uint16_t* out) {
  const uint64_t key = ExpertKey(layer, expert);
  for (int64_t i = 0; i < elements; ++i) out[i] = FillElement(key, static_cast<uint64_t>(i));
}

uint64_t HostExpectedChecksum(int layer, int expert, int64_t elements) {
  const uint64_t key = ExpertKey(layer, expert);
  uint64_t sum = 0;
  for (int64_t i = 0; i < elements / 4; ++i) {
    const auto word = static_cast<uint64_t>(i);
    sum += ChecksumTerm(FillWord(key, word), word);
  }
  return FinishChecksum(sum, static_cast<uint64_t>(elements) * 2);
}

}  // namespace craft::gpu
