// The description of a running local cluster, for the scripts that use one
// (craft-local-cluster writes it to DIR/cluster.env once every process is
// ready, and again after a restart): one "key=value" a line, values without
// spaces or quotes (numbers, addresses, paths), so that a shell can `source`
// it or read one key with `sed -n 's/^planner_grpc_port=//p'`.
//
//   launcher_pid=4242                   the process that runs the cluster
//   dir=/tmp/craft-cluster-Ab12Cd        its files
//   planners=1 nodes=2 gpus=8            (one a line)
//   insecure=false
//   server_name=craft-planner            the planner certificate's name
//   ca_file=DIR/certs/ca.pem             mutual TLS only, with the admin
//   admin_cert_file=DIR/certs/ops.pem    identity "ops" (security.admins)
//   admin_key_file=DIR/certs/ops.key
//   planner_addresses=127.0.0.1:7070     every replica, comma-separated
//   state_path=DIR/planner.state
// and for every process NAME (planner, planner1, agent0, worker3, ...) that
// runs:
//   NAME_pid=4243 NAME_log=DIR/NAME.log
//   NAME_<key> for every key of its ready file: planner_grpc_port,
//     agent0_socket, worker3_transfer_port, NAME_metrics_port (--metrics), ...
//   planner replicas: NAME_address=127.0.0.1:7070 NAME_config=DIR/NAME.yaml
//   mutual TLS: NAME_cert_file, NAME_key_file (its identity's certificate)
#ifndef CRAFT_TOOLS_LOCAL_CLUSTER_DESCRIPTION_H_
#define CRAFT_TOOLS_LOCAL_CLUSTER_DESCRIPTION_H_

#include <string>

#include "tools/local_cluster/local_cluster.h"

namespace craft::local_cluster {

// The description of `cluster`, run by this process. Not thread-safe (it
// reaps processes that exited, as LocalCluster::Running does).
std::string DescribeCluster(LocalCluster& cluster);

}  // namespace craft::local_cluster

#endif  // CRAFT_TOOLS_LOCAL_CLUSTER_DESCRIPTION_H_
