// Child processes for integration tests: real binaries, started with fork and
// exec, their output in a log file, stopped with a signal.
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace craft::local_cluster {

// One child process. Not thread-safe; the destructor kills the child.
class Process {
 public:
  // Starts `binary` with `args`; stdout and stderr go to `log_path`, which
  // is appended to (a restarted process keeps its predecessor's lines). `env`
  // holds extra "NAME=VALUE" pairs for the child; they override inherited
  // variables of the same name.
  static absl::StatusOr<Process> Start(const std::string& binary,
                                       const std::vector<std::string>& args,
                                       const std::string& log_path,
                                       const std::vector<std::string>& env = {});
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  // False once the child exited (it is reaped then, and never signalled
  // again: its pid may belong to another process by now).
  bool Running();
  // Sends `signal` and waits up to `timeout` for the exit; returns the exit
  // status (as from waitpid) or DEADLINE_EXCEEDED (then SIGKILLs).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout = absl::Seconds(10));
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;

 private:
  Process(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_ = -1;
  std::string log_path_;
};

// Waits until `path` exists and holds a line per key "key=value"; returns them.
absl::StatusOr<std::map<std::string, std::string>> WaitForReadyFile(const std::string& path,
                                                                    absl::Duration timeout);

// Polls `predicate` every 50 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout);

// A runfile of this test (a binary it depends on), e.g. "server/craft-planner".
std::string Runfile(const std::string& path);

// A loopback TCP port that was free a moment ago. Processes get fixed ports
// so that a restarted one is found again where it was.
int FreePort();

// A fresh directory under TEST_TMPDIR.
std::string TempDir(const std::string& name);

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_PROCESS_H_
