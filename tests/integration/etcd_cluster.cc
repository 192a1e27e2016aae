#include "tests/integration/etcd_cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace craft::testing {

using ::craft::local_cluster::FreePort;
using ::craft::local_cluster::Process;
using ::craft::local_cluster::WaitFor;

std::string EtcdBinary() {
  const char* configured = std::getenv("CRAFT_ETCD");
  const std::string binary = configured != nullptr ? configured : "/usr/bin/etcd";
  return ::access(binary.c_str(), X_OK) == 0 ? binary : "";
}

EtcdCluster::EtcdCluster(int members, std::string dir) : dir_(std::move(dir)) {
  for (int i = 0; i < members; ++i) {
    client_ports_.push_back(FreePort());
    peer_ports_.push_back(FreePort());
  }
  members_.resize(members);
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) {
    Resume(i);  // a stopped process does not die of SIGTERM
    Kill(i);
  }
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int port : client_ports_) out.push_back(absl::StrCat("127.0.0.1:", port));
  return out;
}

std::string EtcdCluster::endpoint_list() const { return absl::StrJoin(endpoints(), ","); }

absl::Status EtcdCluster::StartMember(int i, bool fresh) {
  std::vector<std::string> initial;
  for (int m = 0; m < size(); ++m) {
    initial.push_back(absl::StrCat("m", m, "=http://127.0.0.1:", peer_ports_[m]));
  }
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client_ports_[i]);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_ports_[i]);
  std::vector<std::string> args = {
      "--name", absl::StrCat("m", i), "--data-dir", absl::StrCat(dir_, "/m", i, ".etcd"),
      "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
      "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
      "--initial-cluster", absl::StrJoin(initial, ","), "--initial-cluster-state",
      fresh ? "new" : "existing",
      // Fast elections on loopback: a lost etcd leader is replaced within ~1 s.
      "--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap",
      // Room for the oversized-value tests (etcd's default is 1.5 MiB).
      "--max-request-bytes", "10485760", "--log-level", "info"};
  absl::StatusOr<Process> process =
      Process::Start(EtcdBinary(), args, absl::StrCat(dir_, "/etcd-m", i, ".log"));
  if (!process.ok()) return process.status();
  members_[i] = std::make_unique<Process>(*std::move(process));
  return absl::OkStatus();
}

absl::Status EtcdCluster::Start() {
  if (EtcdBinary().empty()) return absl::UnavailableError("no etcd binary");
  // A port was free when FreePort picked it, but any outgoing connection on
  // the machine may take it as its ephemeral port before etcd binds it; the
  // member then exits at once ("address already in use"). Such a start is
  // tried again, the whole cluster on fresh ports and data directories.
  absl::Status status;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    if (attempt > 1) {
      for (int i = 0; i < size(); ++i) Kill(i);
      for (int i = 0; i < size(); ++i) {
        client_ports_[i] = FreePort();
        peer_ports_[i] = FreePort();
      }
      dir_ = absl::StrCat(dir_, "/retry", attempt);
      ::mkdir(dir_.c_str(), 0755);
    }
    status = StartOnce();
    if (!absl::IsAborted(status)) return status;
  }
  return status;
}

absl::Status EtcdCluster::StartOnce() {
  for (int i = 0; i < size(); ++i) {
    if (absl::Status s = StartMember(i, /*fresh=*/true); !s.ok()) return s;
  }
  int exited = -1;
  const bool up = WaitFor(
      [&] {
        for (int i = 0; i < size(); ++i) {
          if (!members_[i]->Running()) {
            exited = i;
            return true;
          }
        }
        for (int i = 0; i < size(); ++i) {
          // Logged once the member joined a quorum.
          if (members_[i]->Log().find("published local member to cluster") == std::string::npos) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(30));
  if (exited >= 0) {
    return absl::AbortedError(
        absl::StrCat("etcd member ", exited, " exited at start: ", members_[exited]->LogTail(5)));
  }
  if (!up) {
    std::string logs;
    for (int i = 0; i < size(); ++i) {
      absl::StrAppend(&logs, "\n--- member ", i, ":\n", members_[i]->LogTail(5));
    }
    return absl::DeadlineExceededError(absl::StrCat("etcd cluster did not come up", logs));
  }
  return absl::OkStatus();
}

void EtcdCluster::Kill(int i) {
  if (members_[i] != nullptr && members_[i]->Running()) {
    (void)members_[i]->Stop(SIGKILL, absl::Seconds(5));
  }
  members_[i].reset();
}

absl::Status EtcdCluster::Restart(int i) {
  Kill(i);
  return StartMember(i, /*fresh=*/false);
}

void EtcdCluster::Pause(int i) {
  if (members_[i] == nullptr || !members_[i]->Running()) return;
  ::kill(members_[i]->pid(), SIGSTOP);
  // kill() returns before the member's threads have stopped: a request sent
  // right after could still be answered. Wait until it is stopped.
  int status = 0;
  ::waitpid(members_[i]->pid(), &status, WUNTRACED);
}

void EtcdCluster::Resume(int i) {
  if (members_[i] != nullptr && members_[i]->Running()) ::kill(members_[i]->pid(), SIGCONT);
}

}  // namespace craft::testing
