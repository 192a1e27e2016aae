// The agent's socket listener against real Unix sockets in a temporary
// directory: the file's mode, the peer credential check (a configured id
// that is not ours, and, as root, a child process that became nobody), and
// a clean stop.
#include "agent/unix_socket_listener.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace craft::agent {
namespace {

constexpr uid_t kNobody = 65534;

// Records what it is handed and closes the descriptors at the end.
class RecordingHandler final : public ConnectionHandler {
 public:
  ~RecordingHandler() override {
    for (int fd : fds_) ::close(fd);
  }
  void OnConnection(int fd, const PeerCredentials& peer) override {
    absl::MutexLock lock(&mu_);
    fds_.push_back(fd);
    peers_.push_back(peer);
  }
  // Waits until `count` connections came; the last one's peer.
  bool WaitFor(size_t count, PeerCredentials* peer = nullptr) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fds_.size() >= count; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10))) return false;
    if (peer != nullptr) *peer = peers_.back();
    return true;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return fds_.size();
  }
  int fd(size_t i) {
    absl::MutexLock lock(&mu_);
    return fds_.at(i);
  }

 private:
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<PeerCredentials> peers_ ABSL_GUARDED_BY(mu_);
};

// A connected client socket, or -1 (errno says why).
int Connect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// True when the server end closed `fd` (EOF within 10 s).
bool ClosedByServer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 10'000) != 1) return false;
  char byte;
  return ::read(fd, &byte, 1) == 0;
}

class UnixSocketListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Bazel's TEST_TMPDIR is too long for a Unix socket path.
    char dir[] = "/tmp/craft_listener_test_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/agent.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::unique_ptr<UnixSocketListener> Listen(mode_t mode = 0660,
                                             PeerPolicy peers = PeerPolicy::OwnIds()) {
    UnixSocketListener::Options options;
    options.path = path_;
    options.mode = mode;
    options.peers = peers;
    absl::StatusOr<std::unique_ptr<UnixSocketListener>> listener =
        UnixSocketListener::Listen(options, &handler_);
    EXPECT_TRUE(listener.ok()) << listener.status();
    if (!listener.ok()) return nullptr;
    (*listener)->Start();
    return *std::move(listener);
  }

  mode_t FileMode() {
    struct stat info;
    EXPECT_EQ(::lstat(path_.c_str(), &info), 0);
    return info.st_mode & 07777;
  }

  std::string dir_;
  std::string path_;
  RecordingHandler handler_;
};

TEST_F(UnixSocketListenerTest, TheSocketFileHasTheConfiguredMode) {
  {
    std::unique_ptr<UnixSocketListener> listener = Listen();
    ASSERT_NE(listener, nullptr);
    EXPECT_EQ(FileMode(), 0660u) << "the default";
  }
  std::unique_ptr<UnixSocketListener> listener = Listen(0600);
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(FileMode(), 0600u);

  UnixSocketListener::Options bad;
  bad.path = dir_ + "/other.sock";
  bad.mode = 04755;
  EXPECT_EQ(UnixSocketListener::Listen(bad, &handler_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(UnixSocketListenerTest, APeerWithTheAllowedIdsIsHandedOnWithItsCredentials) {
  std::unique_ptr<UnixSocketListener> listener = Listen();
  ASSERT_NE(listener, nullptr);
  const int client = Connect(path_);
  ASSERT_GE(client, 0) << std::strerror(errno);
  PeerCredentials peer;
  ASSERT_TRUE(handler_.WaitFor(1, &peer));
  EXPECT_EQ(peer.pid, ::getpid());
  EXPECT_EQ(peer.uid, ::geteuid());
  EXPECT_EQ(peer.gid, ::getegid());
  // The handed-on descriptor is the connection.
  ASSERT_EQ(::write(client, "x", 1), 1);
  pollfd p{handler_.fd(0), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  char byte = 0;
  EXPECT_EQ(::read(handler_.fd(0), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(listener->stats().accepted, 1);
  EXPECT_EQ(listener->stats().refused, 0);
  ::close(client);
}

TEST_F(UnixSocketListenerTest, APeerWithOtherIdsIsRefused) {
  std::unique_ptr<UnixSocketListener> listener =
      Listen(0660, PeerPolicy{/*uid=*/12345, /*gid=*/12345});
  ASSERT_NE(listener, nullptr);
  const int client = Connect(path_);
  ASSERT_GE(client, 0) << std::strerror(errno);
  EXPECT_TRUE(ClosedByServer(client));
  ::close(client);
  EXPECT_EQ(handler_.count(), 0u);
  EXPECT_EQ(listener->stats().refused, 1);
  EXPECT_EQ(listener->stats().accepted, 0);
}

TEST_F(UnixSocketListenerTest, EitherTheUidOrTheGidAdmits) {
  const PeerCredentials me{::getpid(), ::geteuid(), ::getegid()};
  EXPECT_TRUE((PeerPolicy{me.uid, 12345}).Admits(me));
  EXPECT_TRUE((PeerPolicy{12345, me.gid}).Admits(me));
  EXPECT_FALSE((PeerPolicy{12345, 12345}).Admits(me));

  std::unique_ptr<UnixSocketListener> listener =
      Listen(0660, PeerPolicy{/*uid=*/12345, ::getegid()});
  ASSERT_NE(listener, nullptr);
  const int client = Connect(path_);
  ASSERT_GE(client, 0) << std::strerror(errno);
  EXPECT_TRUE(handler_.WaitFor(1));
  ::close(client);
}

// The real thing: another user's process, which only root can make here.
TEST_F(UnixSocketListenerTest, AProcessOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  // Wide open file permissions: only the credential check stands in the way.
  std::unique_ptr<UnixSocketListener> listener = Listen(0666);
  ASSERT_NE(listener, nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls after fork in a threaded process.
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) {
      ::_exit(2);
    }
    const int fd = Connect(path_);
    if (fd < 0) ::_exit(3);
    pollfd p{fd, POLLIN, 0};
    char byte;
    ::_exit(::poll(&p, 1, 10'000) == 1 && ::read(fd, &byte, 1) == 0 ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 2) {
    // Root of a user namespace that maps no other user (Bazel's sandbox).
    GTEST_SKIP() << "cannot become uid " << kNobody << " here";
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: connect failed, 4: not closed";
  EXPECT_EQ(handler_.count(), 0u);
  EXPECT_EQ(listener->stats().refused, 1);

  // Root itself (the allowed uid) still gets in.
  const int client = Connect(path_);
  ASSERT_GE(client, 0) << std::strerror(errno);
  EXPECT_TRUE(handler_.WaitFor(1));
  ::close(client);
}

TEST_F(UnixSocketListenerTest, StopRemovesTheSocketAndALiveOneIsNotTakenOver) {
  std::unique_ptr<UnixSocketListener> listener = Listen();
  ASSERT_NE(listener, nullptr);
  UnixSocketListener::Options second;
  second.path = path_;
  EXPECT_EQ(UnixSocketListener::Listen(second, &handler_).status().code(),
            absl::StatusCode::kFailedPrecondition);

  listener->Stop();
  listener->Stop();  // idempotent
  struct stat info;
  EXPECT_NE(::lstat(path_.c_str(), &info), 0) << "the socket file is gone";
  EXPECT_LT(Connect(path_), 0);
  // The path is free for the next agent.
  EXPECT_NE(Listen(), nullptr);
}

TEST_F(UnixSocketListenerTest, AStaleSocketFileIsReplacedAndOtherFilesAreNot) {
  {  // A socket nobody listens on any more (an agent that was killed).
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);
  }
  std::unique_ptr<UnixSocketListener> listener = Listen();
  ASSERT_NE(listener, nullptr);
  listener.reset();

  const std::string file = dir_ + "/not-a-socket";
  ASSERT_EQ(::close(::creat(file.c_str(), 0600)), 0);
  UnixSocketListener::Options options;
  options.path = file;
  EXPECT_EQ(UnixSocketListener::Listen(options, &handler_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ::unlink(file.c_str());
}

}  // namespace
}  // namespace craft::agent
