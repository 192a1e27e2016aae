#include "common/shutdown_signals.h"

#include <pthread.h>

namespace craft {

sigset_t BlockShutdownSignals(std::initializer_list<int> also) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  for (int signal : also) sigaddset(&signals, signal);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

}  // namespace craft
