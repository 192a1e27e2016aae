#include "gpu_worker/expert_weights.h"

#include <algorithm>

#include "gpu_worker/random.h"

namespace craft::gpu_worker {
namespace {

// Separates the weight streams from other uses of HashWords.
constexpr uint64_t kWeightsDomain = 0x77656967687473ULL;  // "weights"

// The byte stream of one expert's weights, read front to back.
class WeightStream {
 public:
  WeightStream(int layer, int expert)
      : rng_(HashWords(
            {kWeightsDomain, static_cast<uint64_t>(layer), static_cast<uint64_t>(expert)})) {}

  void Read(absl::Span<char> out) {
    for (char& byte : out) {
      if (left_in_word_ == 0) {
        word_ = rng_.Next();
        left_in_word_ = 8;
      }
      byte = static_cast<char>(word_ & 0xff);
      word_ >>= 8;
      --left_in_word_;
    }
  }

 private:
  SplitMix64 rng_;
  uint64_t word_ = 0;
  int left_in_word_ = 0;
};

}  // namespace

void FillExpertWeights(int layer, int expert, absl::Span<char> out) {
  WeightStream(layer, expert).Read(out);
}

std::string ExpertWeights(int layer, int expert, int64_t bytes) {
  std::string weights(static_cast<size_t>(std::max<int64_t>(bytes, 0)), '\0');
  FillExpertWeights(layer, expert, absl::MakeSpan(weights));
  return weights;
}

uint64_t ExpectedChecksum(int layer, int expert, int64_t bytes) {
  // Hash in blocks so multi-megabyte experts need no allocation of their size.
  constexpr int64_t kBlock = 4096;
  char block[kBlock];
  WeightStream stream(layer, expert);
  uint64_t hash = kFnv1a64OffsetBasis;
  for (int64_t done = 0; done < bytes; done += kBlock) {
    const size_t n = static_cast<size_t>(std::min(kBlock, bytes - done));
    stream.Read(absl::MakeSpan(block, n));
    hash = Fnv1a64(absl::string_view(block, n), hash);
  }
  return hash;
}

}  // namespace craft::gpu_worker
