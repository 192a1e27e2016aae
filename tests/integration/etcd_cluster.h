// A real etcd cluster on loopback for the high-availability tests: members
// of Debian's etcd-server as child processes, plaintext, each with its own
// data directory, killable, stoppable (SIGSTOP) and restartable one by one.
// Tests that need it skip when the etcd binary is absent.
#ifndef CRAFT_TESTS_INTEGRATION_ETCD_CLUSTER_H_
#define CRAFT_TESTS_INTEGRATION_ETCD_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/local_cluster/process.h"

namespace craft::testing {

// The etcd binary ($CRAFT_ETCD, else /usr/bin/etcd); "" when there is none.
std::string EtcdBinary();

// Not thread-safe. Kills every member on destruction.
class EtcdCluster {
 public:
  EtcdCluster(int members, std::string dir);
  ~EtcdCluster();

  // Starts every member and waits until the cluster answers (on fresh
  // ports when a member could not bind its own).
  absl::Status Start();
  // SIGKILLs member `i` (its data directory stays).
  void Kill(int i);
  // Starts member `i` again on its data directory.
  absl::Status Restart(int i);
  void Pause(int i);   // SIGSTOP; returns once the member is stopped
  void Resume(int i);  // SIGCONT

  int size() const { return static_cast<int>(client_ports_.size()); }
  // "127.0.0.1:<port>" of every member's client port.
  std::vector<std::string> endpoints() const;
  // The same, comma-separated (craft's config and flags).
  std::string endpoint_list() const;

 private:
  // One attempt; ABORTED when a member exited.
  absl::Status StartOnce();
  absl::Status StartMember(int i, bool fresh);

  std::string dir_;
  std::vector<int> client_ports_;
  std::vector<int> peer_ports_;
  std::vector<std::unique_ptr<local_cluster::Process>> members_;
};

}  // namespace craft::testing

#endif  // CRAFT_TESTS_INTEGRATION_ETCD_CLUSTER_H_
