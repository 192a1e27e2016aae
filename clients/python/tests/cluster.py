"""Real craft processes for the client's tests: a planner (mutual TLS) and agents.

Binaries come from Bazel's runfiles ($TEST_SRCDIR/craft/...) or, outside
Bazel, from $CRAFT_BIN_DIR (default: the repository's bazel-bin).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def runfile(path):
    """server/craft-planner -> the built binary."""
    candidates = []
    if os.environ.get("TEST_SRCDIR"):
        candidates.append(os.path.join(os.environ["TEST_SRCDIR"], "craft", path))
    candidates.append(os.path.join(os.environ.get("CRAFT_BIN_DIR", os.path.join(REPO, "bazel-bin")),
                                   path))
    candidates.append(os.path.join(REPO, path))  # scripts/make_certs.sh in a checkout
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError("%s not found (looked in %s); bazel build it or set CRAFT_BIN_DIR"
                            % (path, ", ".join(candidates)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Process:
    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Cluster:
    """A planner for num_nodes x gpus_per_node GPUs (nodes node0..), agents on demand."""

    def __init__(self, num_nodes=2, gpus_per_node=2, num_layers=2, num_experts=8, top_k=2,
                 bytes_per_expert=4096, budget=4, extra_names=("ops", "reader")):
        self.num_nodes = num_nodes
        self.gpus_per_node = gpus_per_node
        self.num_layers = num_layers
        self.num_experts = num_experts
        self.top_k = top_k
        self.bytes_per_expert = bytes_per_expert
        self.budget = budget
        # Unix socket paths must be short: not under Bazel's TEST_TMPDIR.
        self.dir = tempfile.mkdtemp(prefix="craft-py-", dir="/tmp")
        self.certs = os.path.join(self.dir, "certs")
        names = ["craft-planner:127.0.0.1"] + ["node%d" % n for n in range(num_nodes)]
        subprocess.run([runfile("scripts/make_certs.sh"), self.certs] + names + list(extra_names),
                       check=True, capture_output=True)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.token_file = os.path.join(self.dir, "admin-token")
        with open(self.token_file, "w") as f:
            f.write("s3cret-admin-token\n")
        self.planner = None
        self.agents = {}

    @property
    def num_gpus(self):
        return self.num_nodes * self.gpus_per_node

    def tls(self, name):
        return dict(tls_cert=os.path.join(self.certs, name + ".pem"),
                    tls_key=os.path.join(self.certs, name + ".key"),
                    tls_ca=os.path.join(self.certs, "ca.pem"))

    def _tls_flags(self, name):
        t = self.tls(name)
        return ["--tls_cert=" + t["tls_cert"], "--tls_key=" + t["tls_key"],
                "--tls_ca=" + t["tls_ca"]]

    def start_planner(self, timeout=20):
        config = os.path.join(self.dir, "planner.yaml")
        nodes = ", ".join("node%d" % n for n in range(self.num_nodes))
        with open(config, "w") as f:
            f.write(
                'listen_address: "%s"\n' % self.address
                + "state_path: %s/planner.state\n" % self.dir
                + "model:\n  num_layers: %d\n  num_experts: %d\n  top_k: %d\n"
                "  bytes_per_expert: %d\n"
                % (self.num_layers, self.num_experts, self.top_k, self.bytes_per_expert)
                + "cluster:\n  num_gpus: %d\n  num_nodes: %d\n" % (self.num_gpus, self.num_nodes)
                + "security:\n  nodes: [%s]\n  admins: [ops]\n  admin_token_file: %s\n"
                % (nodes, self.token_file)
                + "loads:\n  window_horizon: 16\n"
                + "replan:\n  interval_s: 3600\n  algorithm: craft\n  budget: %d\n"
                "  gain_threshold: 0.01\n" % self.budget
                + "apply:\n  timeout_ms: 10000\n"
            )
        ready = os.path.join(self.dir, "planner.ready")
        if os.path.exists(ready):
            os.remove(ready)
        self.planner = Process([runfile("server/craft-planner"), "--config=" + config,
                                "--ready_file=" + ready] + self._tls_flags("craft-planner"),
                               os.path.join(self.dir, "planner.log"))
        if not wait_for(lambda: os.path.exists(ready) or self.planner.popen.poll() is not None,
                        timeout) or not os.path.exists(ready):
            raise RuntimeError("planner did not start:\n" + self.planner.log())

    def stop_planner(self):
        if self.planner:
            self.planner.stop()
            self.planner = None

    def socket_path(self, node):
        return os.path.join(self.dir, "agent%d.sock" % node)

    def start_agent(self, node, timeout=20):
        gpus = ",".join(str(node * self.gpus_per_node + i) for i in range(self.gpus_per_node))
        ready = os.path.join(self.dir, "agent%d.ready" % node)
        if os.path.exists(ready):
            os.remove(ready)
        self.agents[node] = Process(
            [runfile("agent/craft-agent"), "--node=node%d" % node, "--gpus=" + gpus,
             "--socket=" + self.socket_path(node), "--planner=" + self.address,
             "--state_file=%s/agent%d.state" % (self.dir, node), "--ready_file=" + ready,
             "--worker_wait_ms=0", "--window_flush_ms=100"] + self._tls_flags("node%d" % node),
            os.path.join(self.dir, "agent%d.log" % node))
        if not wait_for(lambda: os.path.exists(ready) or self.agents[node].popen.poll() is not None,
                        timeout) or not os.path.exists(ready):
            raise RuntimeError("agent %d did not start:\n%s" % (node, self.agents[node].log()))

    def logs(self):
        out = []
        for name, p in [("planner", self.planner)] + [("agent%d" % n, a)
                                                       for n, a in self.agents.items()]:
            if p is not None:
                out.append("--- %s (last 3000 chars) ---\n%s" % (name, p.log()[-3000:]))
        return "\n".join(out)

    def close(self):
        for agent in self.agents.values():
            agent.stop()
        self.agents = {}
        self.stop_planner()
        if not os.environ.get("CRAFT_KEEP_TEST_DIR"):
            shutil.rmtree(self.dir, ignore_errors=True)
