// The write side of one gRPC callback-API stream that is written to from
// outside its own reactions: at most one write in flight, the messages pushed
// meanwhile wait in a queue whose bound and drop rule are a parameter
// (DropPolicy), and the stream's end comes after its last write. Every such
// stream uses it, server side (the planner's agent and layout-watch streams,
// the agent's worker streams) and client side (the agent's planner link, the
// worker's agent link, loadgen's fake agents), so the callback API's rules
// below are kept in one place.
//
// The writer starts no gRPC operation itself; its owner, the reactor, hands it
// the two that it may start:
//   start_write(const T*)           StartWrite. The message stays valid and
//                                   untouched until OnWriteDone.
//   on_closed(const grpc::Status&)  The end: Finish(status) on a server;
//                                   RemoveHold() on a client, whose one hold
//                                   (taken before Open) covers every write the
//                                   writer starts outside a reaction.
// and optionally on_written(const T&), told of each message written.
//
//   class Watcher final : public grpc::ServerWriteReactor<Update> {
//    public:
//     Watcher()
//         : writer_(DropPolicy<Update>::KeepLatest(),
//                   [this](const Update* update) { StartWrite(update); },
//                   [this](const grpc::Status& status) { Finish(status); }) {
//       writer_.Open();
//     }
//     void Publish(const Update& update) { writer_.Push(update); }  // any thread
//     void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }
//     void OnCancel() override { writer_.Close(grpc::Status::CANCELLED); }
//     void OnDone() override { delete this; }
//
//    private:
//     StreamWriter<Update> writer_;
//   };
//
// A client reactor binds its call (stub->async()->Method(&context, this)),
// pushes its first message, calls AddHold(), Open(), StartRead() and
// StartCall(); its on_closed is RemoveHold() and its OnReadDone(false) calls
// Close(grpc::Status::OK).
//
// The contract, in callback-API terms:
// - start_write is called for one message at a time, and for the next only
//   after OnWriteDone of the one before: one write in flight, never a write
//   after on_closed.
// - on_closed runs exactly once: after Close (or a failed write) and after the
//   write in flight, if any, is done. So Finish never overlaps a write, and a
//   client's hold outlives every write started outside a reaction.
// - A failed write (OnWriteDone(false)) closes the writer with CANCELLED
//   "write failed": nothing more can be written on that stream.
// - The hooks run on the thread of the call that caused them (Open, Push,
//   Close or OnWriteDone), never under the writer's mutex but under whatever
//   locks that caller holds: a hook must not take a lock held around a call
//   of those four. Hooks may call back into the writer.
// - After on_closed the reactor may be deleted at any moment (gRPC runs OnDone
//   on another thread); the writer touches nothing of itself once it has
//   called on_closed or start_write outside a reaction. Keeping the reactor
//   alive while other threads may still call Push or Close is the owner's
//   business (a registry that OnDone leaves under the registry's lock).
//
// Thread-safety: Open, Push, Close and the accessors are thread-safe;
// OnWriteDone is the reactor's OnWriteDone and nothing else.
#ifndef CRAFT_COMMON_GRPC_STREAM_WRITER_H_
#define CRAFT_COMMON_GRPC_STREAM_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"

namespace craft {

// How many messages may wait behind the write in flight, and which one goes
// when a push finds no room. Every drop is of the oldest candidate: a newer
// message of the same kind supersedes it (a newer load, layout or command).
template <typename T>
class DropPolicy {
 public:
  using Predicate = bool (*)(const T&);

  // One message waits; a newer one replaces it ("latest wins").
  static DropPolicy KeepLatest() { return DropPolicy(1, nullptr, nullptr); }
  // At most `max_waiting` wait; a push into a full queue drops the oldest.
  static DropPolicy DropOldest(size_t max_waiting) {
    return DropPolicy(max_waiting, nullptr, nullptr);
  }
  // At most `max_waiting` messages for which `bounded` holds wait, and the
  // oldest of them is dropped for a newer one; the others are neither counted
  // nor dropped (loads are bounded and replaceable, answers are not).
  static DropPolicy DropOldestOf(size_t max_waiting, Predicate bounded) {
    return DropPolicy(max_waiting, bounded, nullptr);
  }
  // At most `max_waiting` wait; a push into a full queue drops the oldest
  // message for which `preferred` holds, else the oldest.
  static DropPolicy DropOldestPreferring(size_t max_waiting, Predicate preferred) {
    return DropPolicy(max_waiting, nullptr, preferred);
  }

  size_t max_waiting() const { return max_waiting_; }
  // Whether `message` counts against max_waiting() and may be dropped.
  bool Bounded(const T& message) const { return bounded_ == nullptr || bounded_(message); }
  // Whether `message` is dropped before the other bounded ones.
  bool Preferred(const T& message) const { return preferred_ == nullptr || preferred_(message); }

 private:
  DropPolicy(size_t max_waiting, Predicate bounded, Predicate preferred)
      : max_waiting_(max_waiting), bounded_(bounded), preferred_(preferred) {}

  size_t max_waiting_;
  Predicate bounded_;    // null: every message
  Predicate preferred_;  // null: every message
};

// `T` is the stream's outgoing message type (default-constructible, movable).
template <typename T>
class StreamWriter {
 public:
  using StartWriteFn = absl::AnyInvocable<void(const T*)>;
  using ClosedFn = absl::AnyInvocable<void(const grpc::Status&)>;
  using WrittenFn = absl::AnyInvocable<void(const T&)>;

  // What became of a pushed message.
  struct Pushed {
    // False when the writer is closed; the message is then in `left_out`.
    bool accepted = false;
    // The message that will not be written: the one dropped to make room (the
    // pushed one itself when no other may go), or the pushed one when the
    // writer is closed.
    std::optional<T> left_out;
  };

  // `on_written` (may be empty) is called after each successful write, on
  // the thread of OnWriteDone and before the next write starts.
  StreamWriter(DropPolicy<T> policy, StartWriteFn start_write, ClosedFn on_closed,
               WrittenFn on_written = nullptr)
      : policy_(policy),
        start_write_(std::move(start_write)),
        on_closed_(std::move(on_closed)),
        on_written_(std::move(on_written)) {}

  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // Writes may start from now on; until then pushed messages wait (a client
  // reactor may only write once bound to its call). Idempotent.
  void Open() ABSL_LOCKS_EXCLUDED(mu_) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (open_) return;
      open_ = true;
      step = NextStepLocked();
    }
    Run(step);
  }

  // Queues `message` behind the write in flight, as the policy allows, and
  // starts it when no write is in flight.
  Pushed Push(T message) ABSL_LOCKS_EXCLUDED(mu_) {
    Pushed pushed;
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (closing_) {
        pushed.left_out = std::move(message);
        return pushed;
      }
      pushed.accepted = true;
      if (policy_.Bounded(message) && bounded_waiting_ >= policy_.max_waiting()) {
        auto victim = OldestBoundedLocked(/*preferred_only=*/true);
        if (victim == waiting_.end()) victim = OldestBoundedLocked(/*preferred_only=*/false);
        ++dropped_;
        if (victim == waiting_.end()) {  // max_waiting() == 0: no room at all
          pushed.left_out = std::move(message);
          return pushed;
        }
        pushed.left_out = std::move(*victim);
        waiting_.erase(victim);
        --bounded_waiting_;
      }
      if (policy_.Bounded(message)) ++bounded_waiting_;
      waiting_.push_back(std::move(message));
      step = NextStepLocked();
    }
    Run(step);
    return pushed;
  }

  // Ends the stream with `status` after the write in flight, if any; what
  // still waits is not written (TakeUnsent). The first Close wins; true for
  // that one.
  bool Close(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (closing_) return false;
      CloseLocked(status);
      step = NextStepLocked();
    }
    Run(step);
    return true;
  }

  // The reactor's OnWriteDone(ok).
  void OnWriteDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    // writing_ is still the finished write's: no other write starts before
    // write_in_flight_ is cleared below.
    if (ok && on_written_) on_written_(writing_);
    Step step;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok && !closing_) {
        CloseLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      }
      step = NextStepLocked();
    }
    Run(step);
  }

  // Close was called or a write failed: nothing more will be written.
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closing_;
  }
  // No write in flight and none waiting to start.
  bool idle() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return !write_in_flight_ && waiting_.empty();
  }
  // Messages dropped by the policy so far.
  int64_t dropped() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return dropped_;
  }
  // Once closed: the messages that were still waiting, oldest first (not the
  // one in flight). Empty while open, and after the first call.
  std::deque<T> TakeUnsent() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return std::exchange(unsent_, {});
  }

 private:
  // What to do once the mutex is released.
  struct Step {
    enum { kNothing, kWrite, kClosed } kind = kNothing;
    grpc::Status status;  // kClosed's
  };

  void CloseLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    closing_ = true;
    close_status_ = status;
    for (T& message : waiting_) unsent_.push_back(std::move(message));
    waiting_.clear();
    bounded_waiting_ = 0;
  }

  typename std::deque<T>::iterator OldestBoundedLocked(bool preferred_only)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      if (policy_.Bounded(*it) && (!preferred_only || policy_.Preferred(*it))) return it;
    }
    return waiting_.end();
  }

  // The one place that decides to write or to end: only while no write is in
  // flight, and the end only once.
  Step NextStepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    if (write_in_flight_) return step;
    if (closing_) {
      if (!closed_called_) {
        closed_called_ = true;
        step.kind = Step::kClosed;
        step.status = close_status_;
      }
      return step;
    }
    if (!open_ || waiting_.empty()) return step;
    writing_ = std::move(waiting_.front());
    waiting_.pop_front();
    if (policy_.Bounded(writing_)) --bounded_waiting_;
    write_in_flight_ = true;
    step.kind = Step::kWrite;
    return step;
  }

  // Starts what NextStepLocked decided, without the mutex (an operation that
  // ran a reaction inline would otherwise deadlock on it). Touches nothing of
  // the writer afterwards: the reactor may be gone by then.
  void Run(const Step& step) ABSL_LOCKS_EXCLUDED(mu_) {
    switch (step.kind) {
      case Step::kNothing:
        return;
      case Step::kWrite:
        start_write_(&writing_);
        return;
      case Step::kClosed: {
        // Called from a local: the hook's own storage may go with the reactor.
        ClosedFn on_closed = std::move(on_closed_);
        on_closed(step.status);
        return;
      }
    }
  }

  const DropPolicy<T> policy_;
  StartWriteFn start_write_;
  ClosedFn on_closed_;  // moved out by the one kClosed step
  WrittenFn on_written_;

  mutable absl::Mutex mu_;
  std::deque<T> waiting_ ABSL_GUARDED_BY(mu_);
  size_t bounded_waiting_ ABSL_GUARDED_BY(mu_) = 0;  // of waiting_, those the policy bounds
  std::deque<T> unsent_ ABSL_GUARDED_BY(mu_);
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_called_ ABSL_GUARDED_BY(mu_) = false;  // on_closed has been (or is being) run
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // The write in flight's message: set under mu_ by the one step that starts
  // it, then read by gRPC and on_written until OnWriteDone clears
  // write_in_flight_.
  T writing_;
};

}  // namespace craft

#endif  // CRAFT_COMMON_GRPC_STREAM_WRITER_H_
