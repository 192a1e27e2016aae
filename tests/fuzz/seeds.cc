#include "tests/fuzz/seeds.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/file_io.h"
#include "tests/fuzz/fuzz_target.h"

namespace craft::fuzz {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot open ", bytes.status().message()));
  }
  return bytes;
}

absl::StatusOr<std::vector<Seed>> LoadSeeds(const std::string& dir) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return absl::NotFoundError(absl::StrCat("cannot open seed dir ", dir));
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(handle)) {
    const std::string name = entry->d_name;
    struct stat info;
    if (name.empty() || name[0] == '.') continue;
    if (::stat(absl::StrCat(dir, "/", name).c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
      continue;
    }
    names.push_back(name);
  }
  ::closedir(handle);
  if (names.empty()) return absl::NotFoundError(absl::StrCat("no seeds in ", dir));
  std::sort(names.begin(), names.end());

  std::vector<Seed> seeds;
  for (const std::string& name : names) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(dir, "/", name));
    if (!text.ok()) return text.status();
    absl::StatusOr<std::string> input = SeedToInput(*text);
    if (!input.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("seed ", dir, "/", name, ": ", input.status().message()));
    }
    seeds.push_back({name, *std::move(input)});
  }
  return seeds;
}

absl::Status ExportSeeds(const std::string& seed_dir, const std::string& out_dir) {
  absl::StatusOr<std::vector<Seed>> seeds = LoadSeeds(seed_dir);
  if (!seeds.ok()) return seeds.status();
  for (const Seed& seed : *seeds) {
    const std::string path = absl::StrCat(out_dir, "/", seed.name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << seed.input;
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace craft::fuzz
