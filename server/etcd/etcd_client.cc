#include "server/etcd/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc/status.h"

namespace craft::server {
namespace {

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// `status` with etcd's way of saying "your deadline passed" read as ours.
// The deadline travels with the request, and when it expires inside etcd (a
// member cut off from its quorum waits for a read index or a proposal until
// then) etcd 3.4 answers with Go's context error as UNKNOWN "context deadline
// exceeded", which usually arrives before our own deadline fires. Left
// UNKNOWN, it would end the failover loop on the one member that cannot
// answer.
grpc::Status Classified(grpc::Status status) {
  if (status.error_code() == grpc::StatusCode::UNKNOWN &&
      status.error_message() == "context deadline exceeded") {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, status.error_message());
  }
  return status;
}

bool TryNextMember(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

EtcdClient::EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {
  for (const std::string& endpoint : options_.endpoints) {
    grpc::ChannelArguments args;
    // A member that went away is retried soon: failover must not wait on
    // gRPC's default reconnect backoff (up to 120 s).
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: despite its name it is the floor
    // of a connection attempt's timeout (default 20 s), and a floor near the
    // backoff gave up attempts on a busy machine before the handshake was
    // seen.
    // Any response size, as etcd's own client: a value is bounded by the
    // cluster's --max-request-bytes, and a value too large for craft is for
    // the caller to name (ReadEtcdState's DATA_LOSS), not gRPC's 4 MiB
    // default to turn into RESOURCE_EXHAUSTED.
    args.SetMaxReceiveMessageSize(-1);
    std::shared_ptr<grpc::Channel> channel =
        MakeChannel(endpoint, options_.security, options_.server_name, args);
    members_.push_back(Member{endpoint, etcdserverpb::KV::NewStub(channel),
                              etcdserverpb::Lease::NewStub(channel),
                              etcdserverpb::Watch::NewStub(channel)});
  }
}

absl::Status EtcdClient::OnAnyMember(
    const char* what, const std::function<grpc::Status(Member&, grpc::ClientContext*)>& call,
    absl::Time give_up) {
  if (members_.empty()) return absl::FailedPreconditionError("no etcd endpoints configured");
  const size_t first = preferred_.load();
  grpc::Status last(grpc::StatusCode::DEADLINE_EXCEEDED, "gave up before trying a member");
  for (size_t i = 0; i < members_.size(); ++i) {
    const absl::Time now = absl::Now();
    if (now >= give_up) break;
    const size_t index = (first + i) % members_.size();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(std::min(now + options_.request_timeout, give_up)));
    // Wait for the member's channel to connect, up to the deadline, as
    // etcd's own client does. A fail-fast call to a channel that is not
    // connected returns at once without polling it, and nothing else polls
    // a synchronous client's channels but gRPC's backup poller (every 5 s):
    // a member that came back after an outage was reached again only 10-15 s
    // later. (A watch stays fail-fast: it must not sit out its long deadline
    // on a member that is down.)
    context.set_wait_for_ready(true);
    last = Classified(call(members_[index], &context));
    if (last.ok()) {
      preferred_.store(index);
      return absl::OkStatus();
    }
    if (!TryNextMember(last)) break;
  }
  const absl::Status status = FromGrpcStatus(last);
  return absl::Status(status.code(), absl::StrCat("etcd ", what, ": ", status.message()));
}

template <typename Request, typename Response>
absl::StatusOr<Response> EtcdClient::KvCall(
    const char* what, const Request& request,
    grpc::Status (etcdserverpb::KV::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    absl::Time give_up) {
  Response response;
  absl::Status status = OnAnyMember(
      what,
      [&](Member& m, grpc::ClientContext* context) {
        return ((*m.kv).*method)(context, request, &response);
      },
      give_up);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(
    const etcdserverpb::RangeRequest& request, absl::Time give_up) {
  return KvCall("Range", request, &etcdserverpb::KV::Stub::Range, give_up);
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  return KvCall("Txn", request, &etcdserverpb::KV::Stub::Txn);
}

absl::StatusOr<etcdserverpb::PutResponse> EtcdClient::Put(const etcdserverpb::PutRequest& request) {
  return KvCall("Put", request, &etcdserverpb::KV::Stub::Put);
}

absl::StatusOr<etcdserverpb::DeleteRangeResponse> EtcdClient::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& request) {
  return KvCall("DeleteRange", request, &etcdserverpb::KV::Stub::DeleteRange);
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse response;
  absl::Status status = OnAnyMember("LeaseGrant", [&](Member& m, grpc::ClientContext* context) {
    return m.lease->LeaseGrant(context, request, &response);
  });
  if (!status.ok()) return status;
  if (!response.error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd LeaseGrant: ", response.error()));
  }
  return response;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  etcdserverpb::LeaseRevokeResponse response;
  return OnAnyMember("LeaseRevoke", [&](Member& m, grpc::ClientContext* context) {
    return m.lease->LeaseRevoke(context, request, &response);
  });
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id, absl::Time give_up) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_id);
  etcdserverpb::LeaseKeepAliveResponse response;
  absl::Status status = OnAnyMember(
      "LeaseKeepAlive",
      [&](Member& m, grpc::ClientContext* context) {
        std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                                 etcdserverpb::LeaseKeepAliveResponse>>
            stream = m.lease->LeaseKeepAlive(context);
        const bool exchanged = stream->Write(request) && stream->Read(&response);
        if (exchanged) {
          context->TryCancel();  // one round trip is all we wanted
          stream->Finish();
          return grpc::Status::OK;
        }
        stream->WritesDone();
        grpc::Status finished = stream->Finish();
        return finished.ok()
                   ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed")
                   : finished;
      },
      give_up);
  if (!status.ok()) return status;
  return response.ttl();
}

absl::Status EtcdClient::Watch(
    const etcdserverpb::WatchCreateRequest& create, absl::Duration max_duration,
    const std::atomic<bool>* cancelled,
    const std::function<bool(const etcdserverpb::WatchResponse&)>& on_response) {
  if (members_.empty()) return absl::FailedPreconditionError("no etcd endpoints configured");
  Member& member = members_[preferred_.load() % members_.size()];
  grpc::ClientContext context;
  SetDeadline(&context, max_duration);
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream = member.watch->Watch(&context);
  etcdserverpb::WatchRequest request;
  *request.mutable_create_request() = create;
  if (!stream->Write(request)) {
    preferred_.store((preferred_.load() + 1) % members_.size());  // try another next time
    return FromGrpcStatus(stream->Finish());
  }
  etcdserverpb::WatchResponse response;
  bool caller_done = false, stream_ended = false;
  while (!cancelled->load()) {
    if (!stream->Read(&response)) {
      stream_ended = true;
      break;
    }
    if (response.canceled()) {
      context.TryCancel();
      stream->Finish();
      return absl::AbortedError(
          absl::StrCat("etcd cancelled the watch: ", response.cancel_reason(),
                       response.compact_revision() > 0
                           ? absl::StrCat(" (compacted at ", response.compact_revision(), ")")
                           : ""));
    }
    if (!on_response(response)) {
      caller_done = true;
      break;
    }
  }
  // Only when we end it: a cancel before Finish would replace the status of
  // a stream that broke or ran out of time with CANCELLED.
  if (!stream_ended) context.TryCancel();
  grpc::Status finished = Classified(stream->Finish());
  if (cancelled->load()) return absl::CancelledError("watch stopped");
  if (caller_done || finished.ok()) return absl::OkStatus();
  if (TryNextMember(finished) && finished.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    preferred_.store((preferred_.load() + 1) % members_.size());
  }
  // The stream broke or `max_duration` passed: the caller must be able to
  // tell that from its own end (and watch again, from the next revision).
  const absl::Status status = FromGrpcStatus(finished);
  return absl::Status(status.code(), absl::StrCat("etcd Watch: ", status.message()));
}

etcdserverpb::RangeRequest RangeOf(const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  return request;
}

namespace {

// "`key`'s create (or mod) revision is `revision`".
etcdserverpb::Compare RevisionIs(const std::string& key,
                                 etcdserverpb::Compare::CompareTarget target, int64_t revision) {
  etcdserverpb::Compare compare;
  compare.set_key(key);
  compare.set_target(target);
  compare.set_result(etcdserverpb::Compare::EQUAL);
  if (target == etcdserverpb::Compare::CREATE) {
    compare.set_create_revision(revision);
  } else {
    compare.set_mod_revision(revision);
  }
  return compare;
}

}  // namespace

etcdserverpb::Compare CreateRevisionIs(const std::string& key, int64_t revision) {
  return RevisionIs(key, etcdserverpb::Compare::CREATE, revision);
}

etcdserverpb::Compare ModRevisionIs(const std::string& key, int64_t revision) {
  return RevisionIs(key, etcdserverpb::Compare::MOD, revision);
}

etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::RequestOp op;
  etcdserverpb::PutRequest* put = op.mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  return op;
}

etcdserverpb::RequestOp RangeOp(const std::string& key) {
  etcdserverpb::RequestOp op;
  *op.mutable_request_range() = RangeOf(key);
  return op;
}

}  // namespace craft::server
