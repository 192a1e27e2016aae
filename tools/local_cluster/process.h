// Child processes of a local cluster and of tests: real binaries, started
// with fork and exec, their output in a log file, stopped with a signal.
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace craft::local_cluster {

// One child process. Not thread-safe; the destructor kills the child.
class Process {
 public:
  // Starts `binary` with `args`; stdout and stderr go to `log_path`, which
  // is appended to (a restarted process keeps its predecessor's lines), and
  // stdin reads /dev/null. `env` holds extra "NAME=VALUE" pairs for the
  // child; they override inherited variables of the same name. The child
  // runs in a process group of its own (a terminal's Ctrl-C reaches only
  // the parent, which stops its children in order) with no signal blocked,
  // whatever the parent blocks.
  static absl::StatusOr<Process> Start(const std::string& binary,
                                       const std::vector<std::string>& args,
                                       const std::string& log_path,
                                       const std::vector<std::string>& env = {});
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  ~Process();

  // The child's pid, also after it exited (then it names no process of ours).
  pid_t pid() const { return pid_; }
  // False once the child exited (it is reaped then, and never signalled
  // again: its pid may belong to another process by now).
  bool Running();
  // The exit status (as from waitpid) once the child was reaped.
  std::optional<int> exit_status() const { return exit_status_; }
  // Sends `signal` while the child was not reaped.
  void Signal(int signal);
  // Waits until the child exits or `deadline` passes; returns the exit
  // status (as from waitpid), or DEADLINE_EXCEEDED with the child running.
  absl::StatusOr<int> WaitForExit(absl::Time deadline);
  // Sends `signal` and waits up to `timeout` for the exit; returns the exit
  // status (as from waitpid) or DEADLINE_EXCEEDED (then SIGKILLs).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout = absl::Seconds(10));
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;
  // The last `lines` lines of the log, for an error message.
  std::string LogTail(int lines) const;

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  bool reaped() const { return exit_status_.has_value(); }

  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  std::string log_path_;
};

// An exit status (as from waitpid) the way a shell's $? shows it: the exit
// code, or 128 + the number of the signal that ended the process.
int ShellExitCode(int wait_status);

// The "key=value" lines of a file such as a ready file (other lines, and
// "#" comments, are skipped); nullopt while it is missing or holds none.
std::optional<std::map<std::string, std::string>> ReadKeyValueFile(const std::string& path);

// Polls `predicate` every 50 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout);

// A loopback TCP port that was free a moment ago. Processes get fixed ports
// so that a restarted one is found again where it was.
int FreePort();

// A fresh directory under TEST_TMPDIR.
std::string TempDir(const std::string& name);

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_
