#include "tools/local_cluster/description.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace craft::local_cluster {
std::string DescribeCluster(LocalCluster& cluster) {
  const ClusterOptions& options = cluster.options();
  std::string text;
  const auto line = [&text](absl::string_view key, const auto& value) {
    absl::StrAppend(&text, key, "=", value, "\n");
  };
  line("launcher_pid", ::getpid());
  line("dir", cluster.dir());
  line("planners", options.planners);
  line("nodes", options.num_nodes);
  line("gpus", cluster.num_gpus());
  line("insecure", options.insecure ? "true" : "false");
  line("server_name", "craft-planner");
  if (!options.insecure) {
    const TransportSecurity admin = cluster.SecurityOf("ops");
    line("ca_file", admin.ca_file);
    line("admin_cert_file", admin.cert_file);
    line("admin_key_file", admin.key_file);
  }
  line("planner_addresses", cluster.planner_addresses());
  line("state_path", cluster.state_path());
  for (const auto& [role, index] : cluster.AllProcesses()) {
    if (!cluster.Running(role, index)) continue;
    const std::string name = ProcessName(role, index);
    const Process& process = *cluster.process(role, index);
    line(name + "_pid", process.pid());
    line(name + "_log", process.log_path());
    if (role == Role::kPlanner) {
      line(name + "_address", cluster.planner_address(index));
      line(name + "_config", cluster.config_path(index));
    }
    for (const auto& [key, value] : cluster.ReadyValues(role, index)) {
      line(absl::StrCat(name, "_", key), value);
    }
    if (!options.insecure) {
      const TransportSecurity identity = cluster.SecurityOf(cluster.Identity(role, index));
      line(name + "_cert_file", identity.cert_file);
      line(name + "_key_file", identity.key_file);
    }
  }
  return text;
}

}  // namespace craft::local_cluster
