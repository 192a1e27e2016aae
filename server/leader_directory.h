// Who leads, as one planner replica knows it (high availability,
// proto/README.md): followers answer agents and writes with the leader's
// address so that they can go there.
//
//   LeaderDirectory directory;
//   directory.Set("planner-1.craft:50051");    // the follower's etcd view
//   return NotLeader(context, directory.Get());  // in a handler
//
// Thread-safety: thread-safe.
#ifndef CRAFT_SERVER_LEADER_DIRECTORY_H_
#define CRAFT_SERVER_LEADER_DIRECTORY_H_

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "wire/metadata.h"

namespace craft::server {

class LeaderDirectory {
 public:
  // "" when no leader is known.
  std::string Get() const;
  // Calls the change hook (outside the lock) when the address changed.
  void Set(std::string address);
  // Set once, before Set is first called.
  void SetOnChange(std::function<void(const std::string&)> on_change);

 private:
  mutable absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_change_ ABSL_GUARDED_BY(mu_);
};

// UNAVAILABLE "not the leader; the leader is at <address>" (or "no leader
// is elected yet"), with the address (empty when none) in trailing metadata
// (kLeaderMetadataKey) for clients that follow it. UNAVAILABLE: the call is worth retrying there.
grpc::Status NotLeader(grpc::CallbackServerContext* context, const std::string& leader);

}  // namespace craft::server

#endif  // CRAFT_SERVER_LEADER_DIRECTORY_H_
