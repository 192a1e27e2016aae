// Implementation detail of the planner's gRPC services: the write side of a
// server-streaming reactor that is pushed to from any thread (docs/design.md §4,
// "at most one message in flight per stream, latest wins").
//
// At most one write is in flight and at most one message waits; a newer Push
// replaces the waiting one, so a slow client never builds a queue, it jumps
// to the newest message. Close finishes the stream exactly once, after the
// write in flight if there is one (Finish counts as a write).
//
// gRPC operations (StartWrite, Finish) are started outside the internal
// mutex, so a reaction that gRPC runs inline cannot deadlock on it.
//
// Thread-safety: Push and Close are thread-safe; OnWriteDone is gRPC's.
#ifndef CRAFT_SERVER_INTERNAL_LATEST_WINS_WRITER_H_
#define CRAFT_SERVER_INTERNAL_LATEST_WINS_WRITER_H_

#include <grpcpp/grpcpp.h>

#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace craft::server::internal {

// `Reactor` is grpc::ServerBidiReactor<In, Out> or grpc::ServerWriteReactor<Out>.
template <typename Reactor, typename Out>
class LatestWinsWriter : public Reactor {
 public:
  // Sends `message` after the write in flight, replacing any message still
  // waiting. Dropped once the stream is closing.
  void Push(const Out& message) ABSL_LOCKS_EXCLUDED(write_mu_) {
    {
      absl::MutexLock lock(&write_mu_);
      if (closing_) return;
      waiting_ = message;
      if (write_in_flight_) return;  // OnWriteDone sends it
      TakeWaitingLocked();
    }
    this->StartWrite(&in_flight_);
  }

  // Finishes the stream with `status` (the first Close wins). Idempotent.
  void Close(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(write_mu_) {
    {
      absl::MutexLock lock(&write_mu_);
      if (closing_) return;
      closing_ = true;
      finish_status_ = status;
      waiting_.reset();
      if (write_in_flight_) return;  // OnWriteDone finishes
    }
    this->Finish(status);
  }

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(write_mu_) {
    enum { kNothing, kWrite, kFinish } next = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&write_mu_);
      write_in_flight_ = false;
      if (!ok && !closing_) {  // the stream is broken; nothing more can be written
        closing_ = true;
        finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
        waiting_.reset();
      }
      if (closing_) {
        next = kFinish;
        status = finish_status_;
      } else if (waiting_.has_value()) {
        TakeWaitingLocked();
        next = kWrite;
      }
    }
    if (next == kWrite) this->StartWrite(&in_flight_);
    if (next == kFinish) this->Finish(status);
  }

 protected:
  bool closing() const ABSL_LOCKS_EXCLUDED(write_mu_) {
    absl::MutexLock lock(&write_mu_);
    return closing_;
  }

 private:
  void TakeWaitingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    in_flight_ = std::move(*waiting_);
    waiting_.reset();
    write_in_flight_ = true;
  }

  mutable absl::Mutex write_mu_;
  std::optional<Out> waiting_ ABSL_GUARDED_BY(write_mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(write_mu_) = false;
  bool closing_ ABSL_GUARDED_BY(write_mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(write_mu_);
  // Owned by the write in flight: set under the mutex before StartWrite, read
  // by gRPC until OnWriteDone.
  Out in_flight_;
};

}  // namespace craft::server::internal

#endif  // CRAFT_SERVER_INTERNAL_LATEST_WINS_WRITER_H_
