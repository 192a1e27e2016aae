#include "agent/unix_socket_listener.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/socket_file.h"
#include "common/logging.h"

namespace craft::agent {
namespace {

// Pending connections the kernel queues while the accept thread is busy.
constexpr int kBacklog = 64;
// How long the loop pauses when the process is out of file descriptors:
// the pending connection stays queued, and polling again at once would spin.
constexpr int kOutOfFdsPauseMs = 100;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

PeerPolicy PeerPolicy::OwnIds() { return PeerPolicy{::geteuid(), ::getegid()}; }

absl::StatusOr<PeerCredentials> PeerCredentialsOf(int fd) {
  ucred credentials{};
  socklen_t size = sizeof(credentials);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
    return Errno("getsockopt(SO_PEERCRED)");
  }
  return PeerCredentials{credentials.pid, credentials.uid, credentials.gid};
}

absl::StatusOr<std::unique_ptr<UnixSocketListener>> UnixSocketListener::Listen(
    Options options, ConnectionHandler* handler) {
  if ((options.mode & ~mode_t{0777}) != 0) {
    return absl::InvalidArgumentError("the socket mode must be permission bits, 0 to 0777");
  }
  if (absl::Status s = PrepareSocketPath(options.path); !s.ok()) return s;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Errno("socket(AF_UNIX)");
  auto fail = [&](const std::string& what, bool unlink_file) {
    absl::Status status = Errno(absl::StrCat(what, " ", options.path));
    ::close(fd);
    if (unlink_file) ::unlink(options.path.c_str());
    return status;
  };
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // PrepareSocketPath checked that the path fits, with its terminating NUL.
  std::memcpy(address.sun_path, options.path.c_str(), options.path.size() + 1);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return fail("bind", /*unlink_file=*/false);
  }
  // Before listen: until then a connect is refused, so nobody gets in under
  // the umask's mode.
  if (::chmod(options.path.c_str(), options.mode) != 0) return fail("chmod", true);
  struct stat info;
  if (::lstat(options.path.c_str(), &info) != 0) return fail("stat", true);
  if (::listen(fd, kBacklog) != 0) return fail("listen", true);
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) return fail("eventfd for", true);
  return std::unique_ptr<UnixSocketListener>(
      new UnixSocketListener(std::move(options), handler, fd, wake_fd, info.st_dev, info.st_ino));
}

UnixSocketListener::UnixSocketListener(Options options, ConnectionHandler* handler, int listen_fd,
                                       int wake_fd, dev_t device, ino_t inode)
    : options_(std::move(options)),
      handler_(handler),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      device_(device),
      inode_(inode) {}

UnixSocketListener::~UnixSocketListener() { Stop(); }

void UnixSocketListener::Start() {
  thread_ = std::thread([this] { AcceptLoop(); });
}

void UnixSocketListener::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
      CRAFT_LOG(ERROR) << "cannot wake the accept thread of " << options_.path << ": "
                       << std::strerror(errno);
    }
    thread_.join();
  }
  ::close(listen_fd_);
  ::close(wake_fd_);
  struct stat info;
  if (::lstat(options_.path.c_str(), &info) == 0 && info.st_dev == device_ &&
      info.st_ino == inode_) {
    RemoveSocketFile(options_.path);
  }
}

void UnixSocketListener::AcceptLoop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  int timeout_ms = -1;
  while (true) {
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      CRAFT_LOG(ERROR) << "poll on " << options_.path << ": " << std::strerror(errno)
                       << "; no more workers can connect";
      return;
    }
    if (ready > 0 && fds[1].revents != 0) return;  // Stop
    timeout_ms = AcceptPending() ? -1 : kOutOfFdsPauseMs;
  }
}

bool UnixSocketListener::AcceptPending() {
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      Admit(fd);
      continue;
    }
    switch (errno) {
      case EAGAIN:
        return true;  // nothing more pending
      case EINTR:
      case ECONNABORTED:
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        CRAFT_LOG(ERROR) << "accept on " << options_.path << ": " << std::strerror(errno)
                         << "; pausing " << kOutOfFdsPauseMs << " ms";
        return false;
      default:
        CRAFT_LOG(ERROR) << "accept on " << options_.path << ": " << std::strerror(errno);
        return false;
    }
  }
}

void UnixSocketListener::Admit(int fd) {
  absl::StatusOr<PeerCredentials> peer = PeerCredentialsOf(fd);
  if (!peer.ok()) {
    ++refused_;
    CRAFT_LOG(WARNING) << "refused a connection on " << options_.path << ": " << peer.status();
    ::close(fd);
    return;
  }
  if (!options_.peers.Admits(*peer)) {
    ++refused_;
    CRAFT_LOG(WARNING) << "refused a connection on " << options_.path << " from pid " << peer->pid
                       << " uid " << peer->uid << " gid " << peer->gid << ": only uid "
                       << options_.peers.uid << " or gid " << options_.peers.gid
                       << " may attach (--socket_allowed_uid, --socket_allowed_gid)";
    ::close(fd);
    return;
  }
  ++accepted_;
  handler_->OnConnection(fd, *peer);
}

}  // namespace craft::agent
