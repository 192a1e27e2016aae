// The Unix socket file the agent listens on. Stateless functions; safe to
// call from any thread.
#ifndef CRAFT_AGENT_SOCKET_FILE_H_
#define CRAFT_AGENT_SOCKET_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace craft::agent {

// Prepares `path` for listening: INVALID_ARGUMENT when it is empty or too
// long for sockaddr_un; OK when nothing is there; removes a stale socket (one
// nobody accepts connections on); FAILED_PRECONDITION when another process
// listens on it or the path is not a socket (never deletes other files).
absl::Status PrepareSocketPath(const std::string& path);

// Removes the socket file if it is one; errors are ignored (shutdown path).
void RemoveSocketFile(const std::string& path);

}  // namespace craft::agent

#endif  // CRAFT_AGENT_SOCKET_FILE_H_
