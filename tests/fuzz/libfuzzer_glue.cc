// Linked into the libFuzzer binaries only (fuzz.bzl's <name>, built with
// --config=libfuzzer; scripts/fuzz.sh runs them).
//
// libFuzzer's corpus is raw inputs, craft's seeds are text: with
// CRAFT_FUZZ_EXPORT_SEEDS=SEED_DIR:OUT_DIR the binary writes every seed,
// converted, into OUT_DIR and exits. Protobuf targets get field-level
// mutations (mutator.h) besides libFuzzer's own byte-level ones.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/seeds.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // libFuzzer may point stderr at /dev/null later (-close_fd_mask=2, the
  // code under test logs every refusal); failed invariants still show.
  craft::fuzz::SetReportFd(::dup(STDERR_FILENO));
  const char* spec = std::getenv("CRAFT_FUZZ_EXPORT_SEEDS");
  if (spec == nullptr) return 0;
  const std::string dirs = spec;
  const size_t colon = dirs.find(':');
  const absl::Status exported =
      colon == std::string::npos
          ? absl::InvalidArgumentError("CRAFT_FUZZ_EXPORT_SEEDS must be SEED_DIR:OUT_DIR")
          : craft::fuzz::ExportSeeds(dirs.substr(0, colon), dirs.substr(colon + 1));
  if (!exported.ok()) craft::fuzz::Report(absl::StrCat(exported.message(), "\n"));
  std::exit(exported.ok() ? 0 : 2);
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  const google::protobuf::Message* prototype = craft::fuzz::InputMessage();
  craft::fuzz::Rng rng(seed);
  if (prototype != nullptr && rng.OneIn(2)) {
    std::string input(reinterpret_cast<const char*>(data), size);
    if (craft::fuzz::MutateMessage(*prototype, &input, std::string(), max_size, rng)) {
      std::memcpy(data, input.data(), input.size());
      return input.size();
    }
  }
  return LLVMFuzzerMutate(data, size, max_size);
}
