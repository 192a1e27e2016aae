#include "common/grpc/stream_writer.h"

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace craft {
namespace {

using Writer = StreamWriter<std::string>;
using Policy = DropPolicy<std::string>;

bool IsLoad(const std::string& message) { return message.rfind("load", 0) == 0; }

// Stands in for the reactor: records what the writer starts, and checks the
// callback API's rules as it goes.
class FakeStream {
 public:
  explicit FakeStream(Policy policy)
      : writer_(
            policy,
            [this](const std::string* message) {
              absl::MutexLock lock(&mu_);
              EXPECT_EQ(in_flight_, nullptr) << "a second write started before OnWriteDone";
              EXPECT_FALSE(closed_) << "a write started after the end";
              in_flight_ = message;
              started_.push_back(*message);
            },
            [this](const grpc::Status& status) {
              absl::MutexLock lock(&mu_);
              EXPECT_EQ(in_flight_, nullptr) << "ended with a write in flight";
              ++closed_calls_;
              closed_ = true;
              status_ = status;
            },
            [this](const std::string& message) {
              absl::MutexLock lock(&mu_);
              written_.push_back(message);
            }) {}

  Writer& writer() { return writer_; }

  // Completes the write in flight, as gRPC's OnWriteDone.
  void Complete(bool ok = true) {
    {
      absl::MutexLock lock(&mu_);
      ASSERT_NE(in_flight_, nullptr) << "no write in flight";
      in_flight_ = nullptr;
    }
    writer_.OnWriteDone(ok);
  }

  std::vector<std::string> started() const {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  std::vector<std::string> written() const {
    absl::MutexLock lock(&mu_);
    return written_;
  }
  bool in_flight() const {
    absl::MutexLock lock(&mu_);
    return in_flight_ != nullptr;
  }
  int closed_calls() const {
    absl::MutexLock lock(&mu_);
    return closed_calls_;
  }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  mutable absl::Mutex mu_;
  const std::string* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> written_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int closed_calls_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  Writer writer_;  // last: its hooks use the members above
};

std::vector<std::string> Strings(std::deque<std::string> messages) {
  return std::vector<std::string>(messages.begin(), messages.end());
}

TEST(StreamWriterTest, WritesWaitUntilOpen) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Push("hello");
  stream.writer().Push("a");
  EXPECT_TRUE(stream.started().empty());
  EXPECT_FALSE(stream.writer().idle());
  stream.writer().Open();
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"hello"}));
  stream.writer().Open();  // idempotent
  EXPECT_EQ(stream.started().size(), 1u);
}

TEST(StreamWriterTest, OneWriteInFlightAndTheNextOnWriteDone) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Open();
  EXPECT_TRUE(stream.writer().idle());
  stream.writer().Push("a");
  stream.writer().Push("b");
  stream.writer().Push("c");
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"a"}));
  stream.Complete();
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"a", "b"}));
  stream.Complete();
  stream.Complete();
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(stream.written(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_FALSE(stream.in_flight());
  EXPECT_TRUE(stream.writer().idle());
  EXPECT_EQ(stream.writer().dropped(), 0);
}

TEST(StreamWriterTest, KeepLatestReplacesTheWaitingMessage) {
  FakeStream stream(Policy::KeepLatest());
  stream.writer().Open();
  EXPECT_FALSE(stream.writer().Push("v1").left_out.has_value());
  EXPECT_FALSE(stream.writer().Push("v2").left_out.has_value());
  const Writer::Pushed pushed = stream.writer().Push("v3");
  EXPECT_TRUE(pushed.accepted);
  EXPECT_EQ(pushed.left_out, "v2");
  stream.Complete();
  stream.Complete();
  EXPECT_EQ(stream.written(), (std::vector<std::string>{"v1", "v3"}));
  EXPECT_EQ(stream.writer().dropped(), 1);
}

TEST(StreamWriterTest, DropOldestBoundsTheQueue) {
  FakeStream stream(Policy::DropOldest(2));
  stream.writer().Open();
  for (const char* m : {"a", "b", "c", "d", "e"}) stream.writer().Push(m);
  // "a" is in flight; "b" and "c" went for "d" and "e".
  while (stream.in_flight()) stream.Complete();
  EXPECT_EQ(stream.written(), (std::vector<std::string>{"a", "d", "e"}));
  EXPECT_EQ(stream.writer().dropped(), 2);
}

TEST(StreamWriterTest, DropOldestOfBoundsOnlyItsKind) {
  FakeStream stream(Policy::DropOldestOf(2, IsLoad));
  stream.writer().Open();
  stream.writer().Push("hello");
  for (const char* m : {"load1", "ack1", "load2", "ack2", "ack3", "load3", "ack4"}) {
    stream.writer().Push(m);
  }
  // Answers are never dropped; of the loads the two newest wait.
  while (stream.in_flight()) stream.Complete();
  EXPECT_EQ(stream.written(),
            (std::vector<std::string>{"hello", "ack1", "load2", "ack2", "ack3", "load3", "ack4"}));
  EXPECT_EQ(stream.writer().dropped(), 1);
}

TEST(StreamWriterTest, DropOldestOfWithNoRoomDropsThePushedMessage) {
  FakeStream stream(Policy::DropOldestOf(0, IsLoad));
  stream.writer().Open();
  stream.writer().Push("hello");
  const Writer::Pushed pushed = stream.writer().Push("load1");
  EXPECT_TRUE(pushed.accepted);
  EXPECT_EQ(pushed.left_out, "load1");
  stream.writer().Push("ack1");
  while (stream.in_flight()) stream.Complete();
  EXPECT_EQ(stream.written(), (std::vector<std::string>{"hello", "ack1"}));
  EXPECT_EQ(stream.writer().dropped(), 1);
}

TEST(StreamWriterTest, DropOldestPreferringDropsLoadsFirstThenTheOldest) {
  FakeStream stream(Policy::DropOldestPreferring(2, IsLoad));
  stream.writer().Open();
  stream.writer().Push("hello");
  stream.writer().Push("ack1");
  stream.writer().Push("load1");
  EXPECT_EQ(stream.writer().Push("ack2").left_out, "load1");  // a load goes first
  EXPECT_EQ(stream.writer().Push("load2").left_out, "ack1");  // no load waits: the oldest
  while (stream.in_flight()) stream.Complete();
  EXPECT_EQ(stream.written(), (std::vector<std::string>{"hello", "ack2", "load2"}));
  EXPECT_EQ(stream.writer().dropped(), 2);
}

TEST(StreamWriterTest, CloseWithNothingInFlightEndsAtOnce) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Open();
  EXPECT_TRUE(stream.writer().Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining")));
  EXPECT_EQ(stream.closed_calls(), 1);
  EXPECT_EQ(stream.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(stream.writer().closed());
  // The first Close wins; pushes are refused and handed back.
  EXPECT_FALSE(stream.writer().Close(grpc::Status::OK));
  const Writer::Pushed pushed = stream.writer().Push("late");
  EXPECT_FALSE(pushed.accepted);
  EXPECT_EQ(pushed.left_out, "late");
  EXPECT_EQ(stream.closed_calls(), 1);
  EXPECT_EQ(stream.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(stream.started().empty());
  EXPECT_EQ(stream.writer().dropped(), 0);
}

TEST(StreamWriterTest, CloseBeforeOpenEndsAtOnce) {
  // A server refusing a stream in its constructor.
  FakeStream stream(Policy::KeepLatest());
  stream.writer().Close(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no"));
  EXPECT_EQ(stream.closed_calls(), 1);
  stream.writer().Open();
  EXPECT_TRUE(stream.started().empty());
}

TEST(StreamWriterTest, CloseWaitsForTheWriteInFlight) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Open();
  stream.writer().Push("a");
  stream.writer().Push("b");
  stream.writer().Push("c");
  stream.writer().Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "bye"));
  EXPECT_EQ(stream.closed_calls(), 0);
  EXPECT_TRUE(stream.writer().closed());
  EXPECT_FALSE(stream.writer().idle());  // "a" is still in flight
  stream.Complete();
  EXPECT_EQ(stream.closed_calls(), 1);
  EXPECT_EQ(stream.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(stream.writer().idle());
  EXPECT_EQ(Strings(stream.writer().TakeUnsent()), (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(stream.writer().TakeUnsent().empty());
}

TEST(StreamWriterTest, AFailedWriteEndsTheStream) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Open();
  stream.writer().Push("a");
  stream.writer().Push("b");
  stream.Complete(/*ok=*/false);
  EXPECT_TRUE(stream.writer().closed());
  EXPECT_EQ(stream.closed_calls(), 1);
  EXPECT_EQ(stream.status().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(stream.written().empty());  // on_written only for writes that went out
  EXPECT_EQ(Strings(stream.writer().TakeUnsent()), (std::vector<std::string>{"b"}));
  EXPECT_FALSE(stream.writer().Close(grpc::Status::OK));
  EXPECT_EQ(stream.closed_calls(), 1);
}

TEST(StreamWriterTest, TakeUnsentIsEmptyWhileOpen) {
  FakeStream stream(Policy::DropOldest(8));
  stream.writer().Push("a");
  EXPECT_TRUE(stream.writer().TakeUnsent().empty());
  stream.writer().Open();
  EXPECT_EQ(stream.started(), (std::vector<std::string>{"a"}));
}

TEST(StreamWriterTest, HooksMayCallBackIntoTheWriter) {
  std::vector<std::string> started;
  int closed = 0;
  std::unique_ptr<Writer> writer;
  writer = std::make_unique<Writer>(
      Policy::DropOldest(8),
      [&](const std::string* message) {
        started.push_back(*message);
        // gRPC never completes a write inline, but the writer must not care.
        writer->OnWriteDone(/*ok=*/true);
      },
      [&](const grpc::Status&) {
        ++closed;
        EXPECT_FALSE(writer->Push("after the end").accepted);
      },
      [&](const std::string& message) {
        if (message == "a") writer->Push("pushed from on_written");
        if (message == "b") writer->Close(grpc::Status::OK);
      });
  writer->Open();
  writer->Push("a");
  writer->Push("b");
  writer->Push("c");
  EXPECT_EQ(started, (std::vector<std::string>{"a", "pushed from on_written", "b"}));
  EXPECT_EQ(closed, 1);
}

TEST(StreamWriterTest, TheReactorMayBeDeletedByOnClosed) {
  // OnDone may run (and delete the reactor) as soon as Finish or RemoveHold is
  // called; here it is done inline, so that touching the writer afterwards
  // is a use after free (caught under AddressSanitizer).
  for (bool in_flight : {false, true}) {
    auto* writer = new Writer*(nullptr);
    *writer = new Writer(
        Policy::KeepLatest(), [](const std::string*) {},
        [writer](const grpc::Status&) {
          delete *writer;
          *writer = nullptr;
        });
    (*writer)->Open();
    if (in_flight) {
      (*writer)->Push("a");
      (*writer)->Push("b");
      (*writer)->Close(grpc::Status::OK);
      (*writer)->OnWriteDone(/*ok=*/true);
    } else {
      (*writer)->Close(grpc::Status::OK);
    }
    EXPECT_EQ(*writer, nullptr) << in_flight;
    delete writer;
  }
}

// Many threads push, another closes, and a "completion queue" thread finishes
// the writes at random moments: every rule of the contract must hold, and
// every message be accounted for.
TEST(StreamWriterTest, RacingPushesCloseAndCompletions) {
  constexpr int kPushers = 4;
  constexpr int kMessagesEach = 2000;
  for (int round = 0; round < 20; ++round) {
    const bool keep_latest = round % 2 == 1;
    FakeStream stream(keep_latest ? Policy::KeepLatest() : Policy::DropOldest(16));
    std::atomic<bool> pushing_done{false};
    std::atomic<int64_t> refused{0};
    std::atomic<int64_t> left_out{0};

    std::thread completer([&] {
      std::mt19937 rng(round);
      while (true) {
        if (stream.in_flight()) {
          if (rng() % 8 == 0) std::this_thread::yield();
          stream.Complete(/*ok=*/rng() % 5000 != 0);  // now and then a broken stream
        } else if (stream.closed_calls() > 0 || (pushing_done.load() && stream.writer().idle())) {
          return;
        } else {
          std::this_thread::yield();
        }
      }
    });
    std::vector<std::thread> pushers;
    for (int t = 0; t < kPushers; ++t) {
      pushers.emplace_back([&, t] {
        for (int i = 0; i < kMessagesEach; ++i) {
          Writer::Pushed pushed = stream.writer().Push(absl::StrCat(t, ":", i));
          if (!pushed.accepted) ++refused;
          if (pushed.accepted && pushed.left_out.has_value()) ++left_out;
        }
      });
    }
    std::thread closer([&] {
      absl::SleepFor(absl::Microseconds(200 * (round % 5)));
      stream.writer().Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "closing"));
    });
    stream.writer().Open();
    for (std::thread& pusher : pushers) pusher.join();
    pushing_done = true;
    closer.join();
    completer.join();

    ASSERT_EQ(stream.closed_calls(), 1) << round;
    EXPECT_FALSE(stream.in_flight()) << round;
    // Every message was written (or failed in flight), dropped, left waiting
    // at the end, or refused after it.
    const std::vector<std::string> started = stream.started();
    const int64_t unsent = static_cast<int64_t>(stream.writer().TakeUnsent().size());
    const int64_t failed_in_flight = static_cast<int64_t>(started.size() - stream.written().size());
    EXPECT_LE(failed_in_flight, 1) << round;
    EXPECT_EQ(left_out.load(), stream.writer().dropped()) << round;
    EXPECT_EQ(
        static_cast<int64_t>(started.size()) + unsent + stream.writer().dropped() + refused.load(),
        kPushers * kMessagesEach)
        << round;
    // Each pusher's messages go out in the order it pushed them.
    std::vector<int> last(kPushers, -1);
    for (const std::string& message : started) {
      const int t = message[0] - '0';
      const int i = std::stoi(message.substr(2));
      EXPECT_GT(i, last[t]) << round << " " << message;
      last[t] = i;
    }
  }
}

}  // namespace
}  // namespace craft
