#include "tools/local_cluster/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/file_io.h"

namespace craft::local_cluster {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}
namespace {

// The parent's environment with `extra` ("NAME=VALUE") added or overriding.
// Built before fork: the child of a threaded parent should only exec.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** var = environ; *var != nullptr; ++var) {
    const absl::string_view entry(*var);
    const absl::string_view name = entry.substr(0, entry.find('='));
    const bool overridden = std::any_of(extra.begin(), extra.end(), [&](const std::string& e) {
      return absl::StartsWith(e, absl::StrCat(name, "="));
    });
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> NullTerminated(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

absl::StatusOr<Process> Process::Start(const std::string& binary,
                                       const std::vector<std::string>& args,
                                       const std::string& log_path,
                                       const std::vector<std::string>& env) {
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  const std::vector<char*> argv = NullTerminated(argv_strings);
  const std::vector<std::string> env_strings = ChildEnvironment(env);
  const std::vector<char*> envp = NullTerminated(env_strings);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return absl::InternalError(absl::StrCat("cannot open ", log_path));
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) {
    ::close(log);
    return absl::InternalError("cannot open /dev/null");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    ::close(null);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    // dup2 clears close-on-exec on the copies.
    ::dup2(null, STDIN_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::setpgid(0, 0);
    // A parent that waits for its signals with sigwait blocks them; exec
    // would hand the mask on, and the child would never see SIGTERM.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(log);
  ::close(null);
  return Process(pid, log_path);
}

Process::Process(Process&& other) noexcept
    : pid_(other.pid_), exit_status_(other.exit_status_), log_path_(std::move(other.log_path_)) {
  other.pid_ = -1;
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (Running()) (void)Stop(SIGKILL);
    pid_ = other.pid_;
    exit_status_ = other.exit_status_;
    log_path_ = std::move(other.log_path_);
    other.pid_ = -1;
  }
  return *this;
}

Process::~Process() {
  if (Running()) (void)Stop(SIGKILL, absl::Seconds(5));
}

bool Process::Running() {
  if (pid_ <= 0 || reaped()) return false;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == 0) return true;
  exit_status_ = done == pid_ ? status : 0;  // < 0: reaped elsewhere
  return false;
}

void Process::Signal(int signal) {
  if (Running()) ::kill(pid_, signal);
}

absl::StatusOr<int> Process::WaitForExit(absl::Time deadline) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process");
  while (Running()) {
    if (absl::Now() >= deadline) return absl::DeadlineExceededError("did not exit in time");
    absl::SleepFor(absl::Milliseconds(20));
  }
  return *exit_status_;
}

absl::StatusOr<int> Process::Stop(int signal, absl::Duration timeout) {
  if (!Running()) return absl::FailedPreconditionError("not running");
  Signal(signal);
  absl::StatusOr<int> status = WaitForExit(absl::Now() + timeout);
  if (status.ok()) return status;
  ::kill(pid_, SIGKILL);
  int killed = 0;
  ::waitpid(pid_, &killed, 0);
  exit_status_ = killed;
  return absl::DeadlineExceededError("did not exit in time; killed");
}

std::string Process::Log() const {
  // Empty when the log cannot be read: it is for diagnostics only.
  return ReadFileToString(log_path_).value_or("");
}

std::string Process::LogTail(int lines) const {
  const std::string log = Log();
  size_t start = log.size();
  // Skips the final newline, then walks back over `lines` line breaks.
  if (start > 0 && log[start - 1] == '\n') --start;
  for (int found = 0; start > 0; --start) {
    if (log[start - 1] == '\n' && ++found == lines) break;
  }
  return log.substr(start);
}

int ShellExitCode(int wait_status) {
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}

std::optional<std::map<std::string, std::string>> ReadKeyValueFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return std::nullopt;
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    std::vector<std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.size() == 2 && !absl::StartsWith(kv[0], "#")) values[kv[0]] = kv[1];
  }
  if (values.empty()) return std::nullopt;
  return values;
}

bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (predicate()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return predicate();
}

std::string TempDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(root ? root : "/tmp", "/", name);
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

}  // namespace craft::local_cluster
