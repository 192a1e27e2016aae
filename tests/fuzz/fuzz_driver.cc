// The runner that makes a fuzz target a plain test (fuzz.bzl's <name>_test):
// it runs every checked-in seed, then seeded mutations of them for a bounded
// count and time, and fails on the first crash, failed invariant, hang or
// oversized allocation, saving the input that did it.
//
//   <name>_test --corpus=DIR [--seed=N] [--runs=N] [--seconds=S]
//       the seeds of DIR, then --runs mutations (0: until --seconds). Unset
//       flags come from CRAFT_FUZZ_SEED, CRAFT_FUZZ_RUNS, CRAFT_FUZZ_SECONDS.
//   <name>_test FILE...
//       runs each file's bytes once, with the code's logs (to replay an input
//       this runner or libFuzzer saved).
//
// The code under test logs every refusal to stderr; while fuzzing, stderr
// goes to /dev/null (--verbose keeps it) and reports go to the original.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/mutator.h"
#include "tests/fuzz/seeds.h"

ABSL_FLAG(std::string, corpus, "", "directory of checked-in seeds");
ABSL_FLAG(int64_t, seed, -1, "mutation seed (default: CRAFT_FUZZ_SEED, else 1)");
ABSL_FLAG(int64_t, runs, -1,
          "mutated inputs to run, 0 = until --seconds (default: CRAFT_FUZZ_RUNS, else 20000)");
ABSL_FLAG(double, seconds, -1,
          "stop mutating after this long (default: CRAFT_FUZZ_SECONDS, else 20)");
ABSL_FLAG(int64_t, max_len, 8192, "largest mutated input, in bytes (at least the largest seed)");
ABSL_FLAG(int, timeout_s, 10, "an input running longer than this is a hang");
ABSL_FLAG(int64_t, malloc_limit_mb, 512, "a single allocation larger than this is a failure");
ABSL_FLAG(bool, verbose, false, "keep the logs of the code under test while fuzzing");

namespace craft::fuzz {
namespace {

// Read by the signal handler and operator new: plain globals, set before use.
const std::string* g_input = nullptr;  // the input running now
const char* g_seed_name = nullptr;     // its seed file, when it is a seed
int64_t g_input_number = 0;            // its number in this run (seeds first)
char g_target[256];                    // the target's name
char g_save_prefix[4096];              // where a failing input is saved: prefix + number
int g_report_fd = STDERR_FILENO;
size_t g_malloc_limit = size_t{512} << 20;
int g_timeout_s = 10;

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    }
  }
}
void WriteText(const char* text) { WriteAll(g_report_fd, text, std::strlen(text)); }

// Decimal `value` into `out` (at least 21 bytes); async-signal-safe.
char* FormatInt(int64_t value, char* out) {
  char digits[24];
  int n = 0;
  uint64_t v = value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  char* p = out;
  if (value < 0) *p++ = '-';
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
  return out;
}

// Saves the running input and says how to replay it. Called from signal
// handlers, so only write(2) and friends.
void ReportFailingInput(const char* what) {
  char number[32];
  WriteText("\n==== fuzz: ");
  WriteText(what);
  if (g_input == nullptr) {
    WriteText(" outside any input\n");
    return;
  }
  WriteText(" on input #");
  WriteText(FormatInt(g_input_number, number));
  WriteText(" (");
  WriteText(FormatInt(static_cast<int64_t>(g_input->size()), number));
  WriteText(" bytes)");
  if (g_seed_name != nullptr) {
    WriteText(", the seed ");
    WriteText(g_seed_name);
  }
  WriteText("\n");
  char path[sizeof(g_save_prefix) + 32];
  std::strcpy(path, g_save_prefix);
  std::strcat(path, FormatInt(g_input_number, number));
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    WriteAll(fd, g_input->data(), g_input->size());
    ::close(fd);
    WriteText("==== saved to ");
    WriteText(path);
    WriteText(" (under bazel test: in the test's outputs.zip)\n==== replay it: ");
    WriteText("bazel run //tests/fuzz:");
    WriteText(g_target);
    WriteText("_test -- ");
    WriteText(path);
    WriteText("\n");
  }
  // The input itself, escaped, for logs that are all a CI run leaves.
  WriteText("==== input (escaped, at most 2048 bytes): \"");
  const size_t shown = std::min<size_t>(g_input->size(), 2048);
  for (size_t i = 0; i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>((*g_input)[i]);
    char escaped[5] = {static_cast<char>(c), 0, 0, 0, 0};
    if (c == '\\' || c == '"' || c < 0x20 || c >= 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      escaped[0] = '\\';
      escaped[1] = 'x';
      escaped[2] = kHex[c >> 4];
      escaped[3] = kHex[c & 15];
    }
    WriteText(escaped);
  }
  WriteText("\"\n");
}

void OnDeadlySignal(int signal) {
  ReportFailingInput(signal == SIGALRM ? "timeout (a hang?)" : strsignal(signal));
  const int raised = signal == SIGALRM ? SIGABRT : signal;
  ::signal(raised, SIG_DFL);
  ::raise(raised);
}

void InstallSignalHandlers() {
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM}) {
    struct sigaction action = {};
    action.sa_handler = OnDeadlySignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    ::sigaction(signal, &action, nullptr);
  }
}

void RunOne(const std::string& input, const char* seed_name = nullptr) {
  g_input = &input;
  g_seed_name = seed_name;
  ++g_input_number;
  ::alarm(static_cast<unsigned>(g_timeout_s));
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  ::alarm(0);
  g_input = nullptr;
}

// A flag's value when given (>= 0), else the environment's, else `fallback`.
template <typename T>
T Resolve(T flag, const char* env, T fallback) {
  if (flag >= 0) return flag;
  const char* text = std::getenv(env);
  double value = 0;
  if (text != nullptr && absl::SimpleAtod(text, &value) && value >= 0) return static_cast<T>(value);
  return fallback;
}

std::string TargetName(const char* argv0) {
  std::string name = argv0;
  name = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
  if (absl::EndsWith(name, "_test")) name.resize(name.size() - 5);
  return name;
}

void SetSavePrefix(const std::string& target) {
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  const std::string prefix = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", target, "-failing-");
  std::strncpy(g_save_prefix, prefix.c_str(), sizeof(g_save_prefix) - 1);
}

int Replay(const std::vector<char*>& files) {
  for (size_t i = 1; i < files.size(); ++i) {
    absl::StatusOr<std::string> input = ReadFile(files[i]);
    if (!input.ok()) {
      Report(absl::StrCat(input.status().message(), "\n"));
      return 2;
    }
    RunOne(*input);
    Report(absl::StrCat("ran ", files[i], " (", input->size(), " bytes): no failure\n"));
  }
  return 0;
}

int Fuzz(const std::string& target) {
  const std::string corpus = absl::GetFlag(FLAGS_corpus);
  absl::StatusOr<std::vector<Seed>> seeds = LoadSeeds(corpus);
  if (!seeds.ok()) {
    Report(absl::StrCat(target, ": ", seeds.status().message(), "\n"));
    return 2;
  }
  const uint64_t seed = Resolve<int64_t>(absl::GetFlag(FLAGS_seed), "CRAFT_FUZZ_SEED", 1);
  const int64_t runs = Resolve<int64_t>(absl::GetFlag(FLAGS_runs), "CRAFT_FUZZ_RUNS", 20000);
  const double seconds = Resolve<double>(absl::GetFlag(FLAGS_seconds), "CRAFT_FUZZ_SECONDS", 20);
  size_t max_len = static_cast<size_t>(std::max<int64_t>(absl::GetFlag(FLAGS_max_len), 1));
  for (const Seed& s : *seeds) max_len = std::max(max_len, s.input.size());

  if (!absl::GetFlag(FLAGS_verbose)) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDERR_FILENO);
  }

  const absl::Time start = absl::Now();
  for (const Seed& s : *seeds) RunOne(s.input, s.name.c_str());
  const absl::Duration seeds_time = absl::Now() - start;

  // Mutate the seeds, and now and then a recent mutant again, so that edits
  // stack up deeper than one mutation.
  Rng rng(seed);
  const google::protobuf::Message* prototype = InputMessage();
  constexpr size_t kRecent = 64;
  std::vector<std::string> recent;
  const absl::Time deadline = start + absl::Seconds(seconds);
  int64_t mutated = 0;
  absl::Time next_progress = start + absl::Seconds(30);
  while ((runs == 0 || mutated < runs) && absl::Now() < deadline) {
    const std::string& base = !recent.empty() && rng.OneIn(4)
                                  ? recent[rng.Below(recent.size())]
                                  : (*seeds)[rng.Below(seeds->size())].input;
    const std::string& other = (*seeds)[rng.Below(seeds->size())].input;
    std::string input = base;
    if (prototype == nullptr || !rng.OneIn(2) ||
        !MutateMessage(*prototype, &input, other, max_len, rng)) {
      input = MutateBytes(base, other, max_len, rng);
    }
    RunOne(input);
    ++mutated;
    if (recent.size() < kRecent) {
      recent.push_back(std::move(input));
    } else {
      recent[rng.Below(kRecent)] = std::move(input);
    }
    if (absl::Now() >= next_progress) {
      next_progress += absl::Seconds(30);
      Report(absl::StrCat(target, ": ", mutated, " mutated inputs so far\n"));
    }
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  Report(
      absl::StrFormat("%s: %d seeds (%.2f s), then %d mutated inputs: no failure; %.1f s, %.0f "
                      "inputs/s, seed %d%s\n",
                      target, seeds->size(), absl::ToDoubleSeconds(seeds_time), mutated, elapsed,
                      elapsed > 0 ? (seeds->size() + mutated) / elapsed : 0.0, seed,
                      runs != 0 && mutated < runs ? " (stopped by --seconds)" : ""));
  return 0;
}

}  // namespace
}  // namespace craft::fuzz

// A single allocation over --malloc_limit_mb is a failure (what a hostile
// size field would ask for), not something to wait for the OOM killer on.
void* operator new(size_t size) {
  if (size > craft::fuzz::g_malloc_limit) {
    craft::fuzz::WriteText("\n==== fuzz: an allocation exceeded --malloc_limit_mb\n");
    std::abort();
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  if (size > craft::fuzz::g_malloc_limit) return nullptr;
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
  using namespace craft::fuzz;  // NOLINT: the runner's own names
  const std::vector<char*> positional =
      craft::ParseFlags(argc, argv,
                        "a fuzz target as a test: its seeds, then seeded mutations\n\n"
                        "usage: <target>_test --corpus DIR [--seed N] [--runs N] [--seconds S]\n"
                        "       <target>_test FILE...   (replays each file once)");
  g_report_fd = ::dup(STDERR_FILENO);
  SetReportFd(g_report_fd);
  g_malloc_limit = static_cast<size_t>(absl::GetFlag(FLAGS_malloc_limit_mb)) << 20;
  g_timeout_s = absl::GetFlag(FLAGS_timeout_s);
  const std::string target = TargetName(argv[0]);
  std::strncpy(g_target, target.c_str(), sizeof(g_target) - 1);
  SetSavePrefix(target);
  InstallSignalHandlers();
  return positional.size() > 1 ? Replay(positional) : Fuzz(target);
}
