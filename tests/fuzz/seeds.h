// The checked-in seed corpus of a fuzz target (tests/fuzz/corpus/<target>/):
// human-readable files, turned into the target's input by its SeedToInput.
#ifndef CRAFT_TESTS_FUZZ_SEEDS_H_
#define CRAFT_TESTS_FUZZ_SEEDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace craft::fuzz {

struct Seed {
  std::string name;   // the file's name
  std::string input;  // SeedToInput of its text
};

// Every regular file in `dir` (not recursive, dot files skipped), by name. A
// file SeedToInput refuses is an error (a broken seed tests nothing), as is
// a directory without seeds.
absl::StatusOr<std::vector<Seed>> LoadSeeds(const std::string& dir);

// Writes every seed of `seed_dir`, converted, into `out_dir` (which must
// exist) under its name: the starting corpus of a libFuzzer run.
absl::Status ExportSeeds(const std::string& seed_dir, const std::string& out_dir);

// The bytes of the file at `path`.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace craft::fuzz

#endif  // CRAFT_TESTS_FUZZ_SEEDS_H_
