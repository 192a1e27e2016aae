// The signals that stop a craft process, blocked before any thread starts so
// that every thread (gRPC's included) inherits the mask and only the one
// that waits for them (sigwait, a signalfd) ever sees them. A child process
// must unblock them before exec (tools/local_cluster/process.h does).
//
//   int main(int argc, char** argv) {
//     const sigset_t signals = craft::BlockShutdownSignals();
//     ...  // threads start
//     int signal = 0;
//     sigwait(&signals, &signal);
#ifndef CRAFT_COMMON_SHUTDOWN_SIGNALS_H_
#define CRAFT_COMMON_SHUTDOWN_SIGNALS_H_

#include <signal.h>

#include <initializer_list>

namespace craft {

// Blocks SIGTERM, SIGINT and `also` in the calling thread; returns that set.
sigset_t BlockShutdownSignals(std::initializer_list<int> also = {});

}  // namespace craft

#endif  // CRAFT_COMMON_SHUTDOWN_SIGNALS_H_
