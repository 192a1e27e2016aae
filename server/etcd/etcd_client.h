// A small synchronous client for etcd's v3 gRPC API (proto/etcd/rpc.proto):
// the calls the planner's high-availability mode makes (server/etcd/). One
// channel per endpoint; a call goes to the endpoint that answered last and,
// when that one is unreachable or times out, to the next, until every
// endpoint was tried once. Every attempt has its own deadline
// (`request_timeout`), so a member cut off from its quorum costs one timeout,
// not a hang; so does a member that is down (an attempt waits for its
// channel to connect, which is how one that comes back is reached at once).
//
//   EtcdClient client(EtcdClientOptions{{"127.0.0.1:2379"}, security});
//   CRAFT_ASSIGN_OR_RETURN(auto range, client.Range(RangeOf("/craft/c/state")));
//
// Retrying a Txn that reached etcd but whose answer was lost applies it
// twice; craft's transactions are guarded by compares, so the second one
// fails its compare and callers read back what happened.
//
// Thread-safety: thread-safe; calls block the calling thread.
#ifndef CRAFT_SERVER_ETCD_ETCD_CLIENT_H_
#define CRAFT_SERVER_ETCD_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/transport_security.h"
#include "etcd/rpc.grpc.pb.h"

namespace craft::server {

struct EtcdClientOptions {
  std::vector<std::string> endpoints;  // host:port of each member
  // Mutual TLS with the etcd members (their client port), or plaintext when
  // `security.insecure`.
  TransportSecurity security;
  // The DNS name the members' certificates carry; "" checks each endpoint's
  // host.
  std::string server_name;
  absl::Duration request_timeout = absl::Seconds(2);
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdClientOptions options);

  // `give_up`: no attempt runs past it, whatever `request_timeout` allows
  // (a leader's keep-alive must end by its lease's deadline).
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request,
                                                    absl::Time give_up = absl::InfiniteFuture());
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(int64_t ttl_seconds);
  absl::Status LeaseRevoke(int64_t lease_id);
  // One keep-alive round trip on a short-lived LeaseKeepAlive stream; the
  // remaining TTL in seconds (<= 0: the lease has expired). `give_up` as
  // for Range.
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id,
                                             absl::Time give_up = absl::InfiniteFuture());

  // Opens a Watch stream on [key, range_end) from `start_revision` and calls
  // `on_response` with every response until it returns false, the stream
  // breaks, or `*cancelled` (polled between responses and by a deadline of
  // `max_duration`) is set. Returns why it ended: OK when `on_response`
  // returned false, CANCELLED for `*cancelled`, ABORTED when etcd cancelled
  // the watch (e.g. compacted), DEADLINE_EXCEEDED after `max_duration`, and
  // the stream's status (UNAVAILABLE, ...) when it broke.
  absl::Status Watch(const etcdserverpb::WatchCreateRequest& create, absl::Duration max_duration,
                     const std::atomic<bool>* cancelled,
                     const std::function<bool(const etcdserverpb::WatchResponse&)>& on_response);

  const EtcdClientOptions& options() const { return options_; }

 private:
  struct Member {
    std::string endpoint;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  };

  // Runs `call` on each member in turn, starting at the one that answered
  // last, until one answers; statuses other than UNAVAILABLE and
  // DEADLINE_EXCEEDED end the loop (etcd answered: retrying elsewhere would
  // get the same answer), and so does `give_up` (DEADLINE_EXCEEDED).
  absl::Status OnAnyMember(const char* what,
                           const std::function<grpc::Status(Member&, grpc::ClientContext*)>& call,
                           absl::Time give_up = absl::InfiniteFuture());
  // One unary KV call through OnAnyMember.
  template <typename Request, typename Response>
  absl::StatusOr<Response> KvCall(const char* what, const Request& request,
                                  grpc::Status (etcdserverpb::KV::Stub::*method)(
                                      grpc::ClientContext*, const Request&, Response*),
                                  absl::Time give_up = absl::InfiniteFuture());

  const EtcdClientOptions options_;
  std::vector<Member> members_;
  std::atomic<size_t> preferred_{0};
};

// Request builders for the common shapes.
etcdserverpb::RangeRequest RangeOf(const std::string& key);
// A compare of `key`'s create revision (0: the key is absent).
etcdserverpb::Compare CreateRevisionIs(const std::string& key, int64_t revision);
etcdserverpb::Compare ModRevisionIs(const std::string& key, int64_t revision);
etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value, int64_t lease = 0);
etcdserverpb::RequestOp RangeOp(const std::string& key);

}  // namespace craft::server

#endif  // CRAFT_SERVER_ETCD_ETCD_CLIENT_H_
