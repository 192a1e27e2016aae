// The agent's Unix socket for workers, listened on by the agent itself
// instead of by gRPC, so that it decides who may talk to it: the socket file
// gets an explicit mode, and every accepted connection's peer credentials
// (SO_PEERCRED: the connecting process's pid, effective uid and gid) are
// checked against the allowed uid and gid before a byte of it is read. A
// refused connection is closed, logged with the peer's pid/uid/gid and
// counted; an admitted one is handed to a ConnectionHandler (in the agent: a
// gRPC server, through grpc::AddInsecureChannelFromFd).
//
// The file mode and the credential check are two locks on one door: the
// mode keeps other users from connecting at all, the check holds even when
// the mode is loosened or the socket's directory is shared (a hostPath).
//
//   UnixSocketListener::Options options;
//   options.path = "/run/craft/agent.sock";           // mode 0660, own uid/gid
//   auto listener = UnixSocketListener::Listen(options, &handler);
//   (*listener)->Start();   // the accept thread
//   ...
//   (*listener)->Stop();    // no new connections; removes the socket file
//
// Thread-safety: Start and Stop from one controlling thread; stats() from
// any. The handler is called on the accept thread only, never after Stop
// returns.
#ifndef CRAFT_AGENT_UNIX_SOCKET_LISTENER_H_
#define CRAFT_AGENT_UNIX_SOCKET_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace craft::agent {

// Who is at the other end of a Unix socket connection (SO_PEERCRED).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Which peers may connect. Like the socket file's owner and group bits: a
// peer whose effective uid is `uid`, or whose effective gid is `gid`.
struct PeerPolicy {
  uid_t uid = 0;
  gid_t gid = 0;

  bool Admits(const PeerCredentials& peer) const { return peer.uid == uid || peer.gid == gid; }
  // The policy a process with no configuration gets: only its own user and
  // group (effective ids).
  static PeerPolicy OwnIds();
};

// Where admitted connections go.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // Takes ownership of `fd`: a connected, non-blocking, close-on-exec Unix
  // stream socket from `peer`. Called on the accept thread; must not block.
  virtual void OnConnection(int fd, const PeerCredentials& peer) = 0;
};

class UnixSocketListener {
 public:
  struct Options {
    std::string path;
    mode_t mode = 0660;  // of the socket file; at most 0777
    PeerPolicy peers = PeerPolicy::OwnIds();
  };

  struct Stats {
    int64_t accepted = 0;  // handed to the handler
    int64_t refused = 0;   // closed: credentials not admitted, or unreadable
  };

  // Replaces a stale socket file (PrepareSocketPath), binds, sets the file's
  // mode, then listens: the mode is in place before anyone can connect.
  // INVALID_ARGUMENT for a bad path or mode; FAILED_PRECONDITION when another
  // process listens there or the path is not a socket; INTERNAL for a
  // failing system call. `handler` must outlive the listener.
  static absl::StatusOr<std::unique_ptr<UnixSocketListener>> Listen(Options options,
                                                                    ConnectionHandler* handler);
  ~UnixSocketListener();  // Stop()

  UnixSocketListener(const UnixSocketListener&) = delete;
  UnixSocketListener& operator=(const UnixSocketListener&) = delete;

  // Starts accepting on a thread of its own. Once.
  void Start();
  // Stops accepting (connections already handed on are the handler's),
  // joins the thread, closes the socket and removes its file if it is still
  // the one this listener bound. Idempotent.
  void Stop();

  const std::string& path() const { return options_.path; }
  Stats stats() const { return {accepted_.load(), refused_.load()}; }

 private:
  UnixSocketListener(Options options, ConnectionHandler* handler, int listen_fd, int wake_fd,
                     dev_t device, ino_t inode);

  void AcceptLoop();
  // Accepts what is pending; false when the loop should pause (out of
  // file descriptors).
  bool AcceptPending();
  void Admit(int fd);

  const Options options_;
  ConnectionHandler* const handler_;
  const int listen_fd_;
  const int wake_fd_;  // an eventfd: Stop wakes the accept thread with it
  // The socket file this listener bound, so Stop never removes a file that
  // a later agent put at the same path.
  const dev_t device_;
  const ino_t inode_;
  std::thread thread_;
  bool stopped_ = false;
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> refused_{0};
};

// Reads `fd`'s peer credentials (SO_PEERCRED).
absl::StatusOr<PeerCredentials> PeerCredentialsOf(int fd);

}  // namespace craft::agent

#endif  // CRAFT_AGENT_UNIX_SOCKET_LISTENER_H_
