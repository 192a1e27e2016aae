#!/usr/bin/python3
"""Hostile-client probes against a live local craft cluster, and the table.

How to run
----------
    tests/security/probe_table.sh                       # builds with Bazel, then probes
    CRAFT_BIN_DIR=DIR tests/security/probe_table.sh     # use already-built binaries
    tests/security/probe_table.sh --verbose --keep      # every probe; keep the logs
    tests/security/probe_table.sh --groups identity     # some groups only

DIR holds craft-planner, craft-agent, craft-worker and craftctl, flat or as a
bazel-bin tree; probe_table.sh copies them to a temporary directory first, so
a concurrent rebuild cannot swap them mid-run, and installs what the client
needs from Debian when missing (python3-grpcio, python3-protobuf,
protobuf-compiler, protobuf-compiler-grpc, openssl). This file can also be
run directly: /usr/bin/python3 tests/security/probes.py --bin_dir DIR.

A run takes about 75 s on 2 cores. It exits 0 only when no process crashed
or hung, no committed state was lost and every probe had its expected
outcome. The Plan-flood ratios are reported against their 20% target
(issue 16) and change the exit code only with --strict_flood: on a small
shared machine they measure CPU contention more than the planner.

What it does
------------
The client is written from proto/craft/v1/*.proto alone: message classes and
stubs are generated at run time with protoc and grpc_python_plugin into a
temporary directory; hostile messages are sent as raw bytes through generic
methods (no serializer), so nothing here shares code with craft.

It makes a CA and certificates (scripts/make_certs.sh) plus a second,
unrelated CA, and starts craft-planner, two craft-agents (node0: GPUs 0,1;
node1: GPUs 2,3) and four CPU craft-workers over loopback, all with mutual
TLS (security.nodes [node0, node1], admins [ops], an admin token file).
Then four groups of probes:

  1. malformed  random, truncated and garbage bytes as the request of every
                PlacementService RPC and as AgentGateway.Connect messages
                (before and after a valid hello), wrong wire types, bad
                values, huge repeated fields, 1 MiB strings, messages just
                over the planner's (64 MiB) and a worker's transfer port's
                (16 KiB) limits, unknown methods, garbage on an agent's
                Unix socket;
  2. identity   plaintext, certificate-less and other-CA clients on every TCP
                port, a node's certificate claiming another node or its GPUs,
                a certificate outside security.nodes, readers and nodes
                calling Replan, bad bearer tokens, fetches from a worker's
                transfer port without a Prepare naming them and, during a
                real Prepare, by every certificate but the destination
                node's, a second worker claiming an attached GPU, and a
                second agent stream for a connected node (it replaces the
                first: the real agent must come back and the next apply
                commit);
  3. bounds     1 MiB node names, versions and endpoints in a hello (the
                planner's log must not grow by the same), a hello claiming
                epoch 2^62 and a stray Nack{STALE_EPOCH} (neither may fence
                the planner for good: a forced Replan must commit after),
                Nacks with 1 MiB of text, dry-run Plans over
                limits.max_plan_work (RESOURCE_EXHAUSTED within 1 s) and at
                it, load windows with ids near INT64_MAX and other bad clocks
                from node0 (refused and counted for node0 only, while node1's
                windows keep being ingested);
  4. flood      Replan latency and GetLayout p99 unloaded, then with Plan
                requests of the largest allowed work kept in flight by
                another process.

Each probe records its expected and actual outcome and whether it was refused
with a clear error (a gRPC status other than OK/UNKNOWN with a message, or a
refused TLS handshake). After each group every process must still run and
answer (planner GetLayout, agents' health ports), and the planner's RSS is
sampled (/proc/PID/status VmRSS). Final checks: the committed version never
went backwards, every GPU is on it (ListAgents gpu_versions and each worker's
own "verify ok version=" log line), one more forced apply commits on every
worker, and craftctl agents still reads the cluster.
"""

import argparse
import collections
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import grpc

INT64_MAX = (1 << 63) - 1
SEED = 16

# The test cluster's shape (kept small: the run must be fast on 2 cores).
NUM_LAYERS = 4
NUM_EXPERTS = 16
TOP_K = 2
NUM_NODES = 2
GPUS_PER_NODE = 2
NUM_GPUS = NUM_NODES * GPUS_PER_NODE
WINDOW_MS = 200
MAX_PLAN_WORK = 1 << 26      # limits.max_plan_work in the planner config below
MAX_CONCURRENT_PLANS = 2     # limits.max_concurrent_plans (--max_concurrent_plans)
PLANNER_MAX_MESSAGE = 64 << 20
WORKER_MAX_MESSAGE = 16 << 10
PLANNER_NAME = "craft-planner"

CONNECT = "/craft.v1.AgentGateway/Connect"
ATTACH = "/craft.v1.NodeAgent/Attach"
FETCH = "/craft.v1.ExpertTransfer/FetchExpert"
HEALTH = "/grpc.health.v1.Health/Check"
PLACEMENT = {
    "GetLayout": "/craft.v1.PlacementService/GetLayout",
    "ListAgents": "/craft.v1.PlacementService/ListAgents",
    "Explain": "/craft.v1.PlacementService/Explain",
    "Plan": "/craft.v1.PlacementService/Plan",
    "Replan": "/craft.v1.PlacementService/Replan",
    "WatchLayout": "/craft.v1.PlacementService/WatchLayout",
}

pb = None  # the generated modules, set by generate_protos()


# --------------------------------------------------------------------------
# Generated code


class Protos:
    def __init__(self, gen_dir):
        sys.path.insert(0, gen_dir)
        from craft.v1 import agent_pb2, layout_pb2, load_pb2, placement_pb2, worker_pb2
        self.agent = agent_pb2
        self.layout = layout_pb2
        self.load = load_pb2
        self.placement = placement_pb2
        self.worker = worker_pb2
        from craft.v1 import placement_pb2_grpc
        self.placement_grpc = placement_pb2_grpc


def generate_protos(repo, gen_dir):
    """The Python client's generator (clients/python/generate.sh) on the .protos alone."""
    subprocess.run(["bash", os.path.join(repo, "clients/python/generate.sh"), gen_dir,
                    os.path.join(repo, "proto")], check=True)
    global pb
    pb = Protos(gen_dir)


# --------------------------------------------------------------------------
# Channels and calls


class Identity:
    """A client's TLS material: a certificate and key, and the CA it trusts."""

    def __init__(self, name, cert=None, key=None, ca=None, plaintext=False):
        self.name = name
        self.plaintext = plaintext
        read = lambda p: open(p, "rb").read() if p else None
        self.cert, self.key, self.ca = read(cert), read(key), read(ca)


def open_channel(target, who, server_name=PLANNER_NAME, options=()):
    opts = [("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.enable_retries", 0)] + list(options)
    if who.plaintext:
        return grpc.insecure_channel(target, options=opts)
    creds = grpc.ssl_channel_credentials(root_certificates=who.ca, private_key=who.key,
                                         certificate_chain=who.cert)
    opts.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, creds, options=opts)


class Outcome:
    """What one call did: a status code name, its message, and responses."""

    def __init__(self, code, details="", responses=(), elapsed=0.0):
        self.code = code  # "OK", "PERMISSION_DENIED", ...; "OPEN": a stream the server kept
        self.details = details or ""
        self.responses = list(responses)
        self.elapsed = elapsed

    def clear_refusal(self):
        return (self.code not in ("OK", "UNKNOWN", "OPEN", "DEADLINE_EXCEEDED", "CANCELLED")
                and bool(self.details.strip()))

    def __str__(self):
        text = self.code
        if self.details:
            d = " ".join(self.details.split())
            text += ": " + (d[:110] + "..." if len(d) > 110 else d)
        return text


def unary(channel, path, request, timeout=5.0, metadata=None):
    start = time.monotonic()
    try:
        response = channel.unary_unary(path)(request, timeout=timeout, metadata=metadata)
        return Outcome("OK", "", [response], time.monotonic() - start)
    except grpc.RpcError as e:
        return Outcome(e.code().name, e.details(), (), time.monotonic() - start)


def server_stream(channel, path, request, first_only=True, timeout=3.0):
    """A server-streaming call: OK/"OPEN" once the first response arrived."""
    start = time.monotonic()
    call = channel.unary_stream(path)(request, timeout=timeout)
    responses = []
    try:
        for response in call:
            responses.append(response)
            if first_only:
                call.cancel()
                return Outcome("OPEN", "", responses, time.monotonic() - start)
        return Outcome("OK", "", responses, time.monotonic() - start)
    except grpc.RpcError as e:
        return Outcome(e.code().name, e.details(), responses, time.monotonic() - start)


def bidi(channel, path, messages, hold_s=0.6, timeout=15.0, on_response=None):
    """Sends `messages` (bytes) on a bidi stream and keeps the send side open
    for `hold_s` or until the server ends the stream. The outcome is the
    server's final status when it ended the stream first, else "OPEN".
    `on_response(bytes, send)` may answer: send(bytes) queues a message."""
    start = time.monotonic()
    queue = collections.deque(messages)
    cv = threading.Condition()
    state = {"closing": False, "ended": False}

    def send(message):
        with cv:
            queue.append(message)
            cv.notify_all()

    def requests():
        # The send side stays open until the caller is done waiting (never on
        # a clock of its own: that would race with the wait below).
        while True:
            with cv:
                while not queue and not state["closing"]:
                    cv.wait(0.5)
                if not queue:
                    return
                message = queue.popleft()
            yield message

    call = channel.stream_stream(path)(requests(), timeout=timeout)
    responses = []
    ended = threading.Event()

    def read():
        try:
            for response in call:
                responses.append(response)
                if on_response is not None:
                    on_response(response, send)
        except grpc.RpcError:
            pass
        finally:
            ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ended_early = ended.wait(hold_s)
    with cv:
        state["closing"] = True
        cv.notify_all()
    if not ended_early:
        # Half-close and give the server a moment to finish on its own.
        if not ended.wait(1.5):
            call.cancel()
            ended.wait(2.0)
        return Outcome("OPEN", "", responses, time.monotonic() - start)
    code = call.code()
    return Outcome(code.name if code else "UNKNOWN", call.details() or "", responses,
                   time.monotonic() - start)


# --------------------------------------------------------------------------
# Messages


def agent_msg(**body):
    message = pb.agent.AgentMessage()
    for key, value in body.items():
        getattr(message, key).CopyFrom(value)
    return message.SerializeToString()


def prepare_version(prepare):
    """The version a Prepare stages: its layout delta's, else its layout's."""
    return (prepare.layout_delta.version if prepare.HasField("layout_delta")
            else prepare.layout.version)


def hello(node, gpus, endpoints=None, committed="", epoch=0, prepared="", model=True,
          serving=None):
    h = pb.agent.AgentHello(node=node, committed_version=committed, highest_epoch=epoch,
                            prepared_version=prepared)
    if model:
        h.model.num_layers = NUM_LAYERS
        h.model.num_experts = NUM_EXPERTS
        h.model.top_k = TOP_K
    for rank in gpus:
        g = h.gpus.add(rank=rank, memory_bytes=1 << 30)
        if endpoints and rank in endpoints:
            g.transfer_endpoint = endpoints[rank]
        if serving:
            g.serving_version = serving
    return h


def varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire_type, payload):
    key = varint((number << 3) | wire_type)
    if wire_type == 0:
        return key + varint(payload)
    if wire_type == 1:
        return key + struct.pack("<Q", payload & ((1 << 64) - 1))
    if wire_type == 5:
        return key + struct.pack("<I", payload & 0xFFFFFFFF)
    return key + varint(len(payload)) + payload


def parses(message_class, data):
    """Whether `data` is one whole message of `message_class`, as C++ parses
    it (Python stops quietly at a stray end-group tag; C++ refuses it)."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return message_class().MergeFromString(data) == len(data)
    except Exception:
        return False


# --------------------------------------------------------------------------
# The cluster


class Proc:
    def __init__(self, name, argv, log):
        self.name = name
        self.log = log
        self.logf = open(log, "ab")
        self.popen = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.logf.close()


def wait_file(path, key, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            for line in open(path).read().splitlines():
                if line.startswith(key + "="):
                    return line.split("=", 1)[1]
        time.sleep(0.05)
    raise RuntimeError("no %s in %s after %.0f s" % (key, path, timeout))


def rss_mb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class Cluster:
    def __init__(self, bin_dir, make_certs, work_dir):
        self.bin = bin_dir
        self.dir = work_dir
        self.certs = os.path.join(work_dir, "certs")
        self.stranger_certs = os.path.join(work_dir, "stranger-certs")
        names = ["craft-planner:127.0.0.1,localhost", "node0", "node1", "ops", "reader1",
                 "node9"]
        for d, ns in ((self.certs, names),
                      (self.stranger_certs, ["craft-planner", "node0", "node1", "ops"])):
            subprocess.run(["bash", make_certs, d] + ns, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rng = random.Random(SEED)
        self.token = "".join(rng.choice("0123456789abcdef") for _ in range(40))
        self.token_file = os.path.join(work_dir, "admin-token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.procs = {}
        self.planner_port = None
        self.transfer_ports = {}
        self.health_ports = {}

    def who(self, name):
        return Identity(name, os.path.join(self.certs, name + ".pem"),
                        os.path.join(self.certs, name + ".key"),
                        os.path.join(self.certs, "ca.pem"))

    def stranger(self, name):
        # Another CA's certificate naming `name`; it trusts our CA for the server.
        return Identity("stranger-" + name, os.path.join(self.stranger_certs, name + ".pem"),
                        os.path.join(self.stranger_certs, name + ".key"),
                        os.path.join(self.certs, "ca.pem"))

    def tls_flags(self, name):
        return ["--tls_cert=" + os.path.join(self.certs, name + ".pem"),
                "--tls_key=" + os.path.join(self.certs, name + ".key"),
                "--tls_ca=" + os.path.join(self.certs, "ca.pem")]

    @property
    def planner_target(self):
        return "127.0.0.1:%d" % self.planner_port

    def start(self):
        config = os.path.join(self.dir, "planner.yaml")
        with open(config, "w") as f:
            f.write(
                'listen_address: "127.0.0.1:0"\n'
                "state_path: %s/planner.state\n"
                "security:\n  nodes: [node0, node1]\n  admins: [ops]\n"
                '  readers: ["*"]\n  admin_token_file: %s\n'
                "model:\n  num_layers: %d\n  num_experts: %d\n  top_k: %d\n"
                "  bytes_per_expert: 4096\n"
                "cluster:\n  num_gpus: %d\n  num_nodes: %d\n"
                "loads:\n  window_horizon: 16\n  max_clock_skew_s: 60\n"
                "replan:\n  interval_s: 3600\n  algorithm: craft\n  budget: 2\n"
                # force=false never pushes: Replan latency is the planning alone.
                "  gain_threshold: 0.95\n"
                "limits:\n  max_concurrent_plans: %d\n  max_plan_work: %d\n"
                "apply:\n  timeout_ms: 10000\n"
                % (self.dir, self.token_file, NUM_LAYERS, NUM_EXPERTS, TOP_K, NUM_GPUS,
                   NUM_NODES, MAX_CONCURRENT_PLANS, MAX_PLAN_WORK))
        ready = os.path.join(self.dir, "planner.ready")
        self.procs["planner"] = Proc(
            "planner", [os.path.join(self.bin, "craft-planner"), "--config=" + config,
                        "--ready_file=" + ready] + self.tls_flags(PLANNER_NAME),
            os.path.join(self.dir, "planner.log"))
        self.planner_port = int(wait_file(ready, "grpc_port"))
        for node in range(NUM_NODES):
            gpus = [node * GPUS_PER_NODE + i for i in range(GPUS_PER_NODE)]
            ready = os.path.join(self.dir, "agent%d.ready" % node)
            self.procs["agent%d" % node] = Proc(
                "agent%d" % node,
                [os.path.join(self.bin, "craft-agent"), "--node=node%d" % node,
                 "--gpus=" + ",".join(map(str, gpus)),
                 "--socket=%s/agent%d.sock" % (self.dir, node),
                 "--planner=" + self.planner_target,
                 "--state_file=%s/agent%d.state" % (self.dir, node),
                 "--ready_file=" + ready, "--health_listen=127.0.0.1:0",
                 "--num_layers=%d" % NUM_LAYERS, "--num_experts=%d" % NUM_EXPERTS,
                 "--top_k=%d" % TOP_K] + self.tls_flags("node%d" % node),
                os.path.join(self.dir, "agent%d.log" % node))
            self.health_ports[node] = int(wait_file(ready, "health_port"))
        for gpu in range(NUM_GPUS):
            node = gpu // GPUS_PER_NODE
            ready = os.path.join(self.dir, "worker%d.ready" % gpu)
            self.procs["worker%d" % gpu] = Proc(
                "worker%d" % gpu,
                [os.path.join(self.bin, "craft-worker"), "--backend=cpu", "--gpu=%d" % gpu,
                 "--num_gpus=%d" % NUM_GPUS, "--num_nodes=%d" % NUM_NODES,
                 "--num_layers=%d" % NUM_LAYERS, "--num_experts=%d" % NUM_EXPERTS,
                 "--top_k=%d" % TOP_K, "--agent=unix:%s/agent%d.sock" % (self.dir, node),
                 "--window_ms=%d" % WINDOW_MS, "--tokens_per_window=4096", "--skew=8",
                 "--seed=7", "--verify_interval_ms=300", "--ready_file=" + ready]
                + self.tls_flags("node%d" % node),
                os.path.join(self.dir, "worker%d.log" % gpu))
        for gpu in range(NUM_GPUS):
            ready = os.path.join(self.dir, "worker%d.ready" % gpu)
            self.transfer_ports[gpu] = int(wait_file(ready, "transfer_port"))

    def stop(self):
        for name in sorted(self.procs, key=lambda n: (n.startswith("planner"),
                                                      n.startswith("agent"), n)):
            self.procs[name].stop()

    def endpoints(self, node):
        return {g: "127.0.0.1:%d" % self.transfer_ports[g]
                for g in range(node * GPUS_PER_NODE, (node + 1) * GPUS_PER_NODE)}

    def worker_version(self, gpu):
        path = os.path.join(self.dir, "worker%d.log" % gpu)
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - (64 << 10)))
            text = f.read().decode("utf-8", "replace")
        at = text.rfind("verify ok version=")
        if at < 0:
            return ""
        return text[at + len("verify ok version="):].split()[0]


# --------------------------------------------------------------------------
# The probe runner


class Probe:
    def __init__(self, group, name, expect, expected_codes, outcome, ok=None, note=""):
        self.group = group
        self.name = name
        self.expect = expect
        self.outcome = outcome
        self.ok = outcome.code in expected_codes if ok is None else ok
        self.clear = outcome.clear_refusal()
        self.note = note


REFUSED = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED",
           "FAILED_PRECONDITION", "OUT_OF_RANGE", "INTERNAL", "UNIMPLEMENTED", "NOT_FOUND",
           "ALREADY_EXISTS", "UNAVAILABLE", "ABORTED", "DATA_LOSS"}
ANSWERED = REFUSED | {"OK", "OPEN"}
HANDSHAKE = {"UNAVAILABLE"}  # a refused TLS handshake reaches a client as UNAVAILABLE


class Runner:
    def __init__(self, cluster, verbose):
        self.c = cluster
        self.verbose = verbose
        self.rng = random.Random(SEED)
        self.probes = []
        self.group = None
        self.group_stats = collections.OrderedDict()
        self.versions_seen = []    # every committed version observed, in order
        self.version_went_back = []
        self.notes = []
        self.state_lost = None   # set by final_checks
        self.flood = None
        self.ops = cluster.who("ops")
        self.reader = cluster.who("reader1")
        self._channels = {}
        self.stub = pb.placement_grpc.PlacementServiceStub(self.ch(self.ops))

    # Channels to the planner, one per identity, reused.
    def ch(self, who):
        key = (who.name, who.plaintext)
        if key not in self._channels:
            self._channels[key] = open_channel(self.c.planner_target, who)
        return self._channels[key]

    def record(self, name, expect, expected_codes, outcome, ok=None, note=""):
        p = Probe(self.group, name, expect, expected_codes, outcome, ok, note)
        self.probes.append(p)
        if self.verbose or not p.ok:
            print("  [%s] %-58s expect %-28s got %s%s" % (
                "ok" if p.ok else "UNEXPECTED", name[:58], expect[:28], outcome,
                (" (" + note + ")") if note else ""), flush=True)
        return p

    # -- observations ------------------------------------------------------

    def layout(self):
        # Well-formed calls go through the generated stub.
        try:
            status = self.stub.GetLayout(pb.placement.GetLayoutRequest(), timeout=5)
        except grpc.RpcError:
            return None
        self.observe(status.committed.version)
        return status

    def observe(self, version):
        v = tuple(int(x) for x in version.split(".")) if version else (0, 0)
        if self.versions_seen and v < self.versions_seen[-1]:
            self.version_went_back.append((self.versions_seen[-1], v))
        if not self.versions_seen or v != self.versions_seen[-1]:
            self.versions_seen.append(v)

    def agents(self):
        try:
            response = self.stub.ListAgents(pb.placement.ListAgentsRequest(), timeout=5)
        except grpc.RpcError:
            return None
        return {a.node: a for a in response.agents}

    def settled(self):
        """Both agents connected, every GPU on the committed version."""
        status, agents = self.layout(), self.agents()
        if status is None or agents is None:
            return False
        committed = status.committed.version or "0.0"
        for node in ("node0", "node1"):
            a = agents.get(node)
            if a is None or not a.connected or a.committed_version != committed:
                return False
            if any(v != committed for v in a.gpu_versions):
                return False
        return not status.pending_version

    def wait_settled(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            time.sleep(0.2)
        return False

    def replan(self, force, who=None, metadata=None, timeout=20.0):
        return unary(self.ch(who or self.ops), PLACEMENT["Replan"],
                     pb.placement.ReplanRequest(force=force).SerializeToString(),
                     timeout=timeout, metadata=metadata)

    def forced_commit(self, timeout=25.0):
        """Replan --force, then wait until its version is committed and every
        GPU serves it. Returns (ok, text)."""
        if not self.wait_settled(timeout):
            return False, "cluster not settled before the replan"
        out = self.replan(True)
        if out.code != "OK":
            return False, "Replan --force: %s" % out
        response = pb.placement.ReplanResponse.FromString(out.responses[0])
        if not response.version:
            return False, "Replan --force applied nothing: %s" % response.decision
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.layout()
            if status is not None and status.committed.version == response.version and \
                    self.settled():
                return True, "committed %s" % response.version
            time.sleep(0.2)
        status = self.layout()
        return False, "version %s not committed everywhere (committed %s)" % (
            response.version, status.committed.version if status else "?")

    def health(self, node, who):
        ch = open_channel("127.0.0.1:%d" % self.c.health_ports[node], who,
                          server_name="node%d" % node)
        try:
            return unary(ch, HEALTH, b"", timeout=3)
        finally:
            ch.close()

    def liveness(self):
        """Processes that died, or that stopped answering."""
        dead = [name for name, p in self.c.procs.items() if not p.alive()]
        if "planner" not in dead and self.layout() is None:
            time.sleep(1.0)
            if self.layout() is None:
                dead.append("planner (not answering GetLayout)")
        for node in range(NUM_NODES):
            if "agent%d" % node in dead:
                continue
            out = self.health(node, self.c.who("ops"))
            if out.code != "OK" or out.responses[0] != b"\x08\x01":
                dead.append("agent%d (health: %s)" % (node, out))
        return dead

    # -- groups --------------------------------------------------------------

    def planner_log_size(self):
        return os.path.getsize(os.path.join(self.c.dir, "planner.log"))

    def check_log_growth(self, label, since, limit=16 << 10):
        time.sleep(0.1)
        grown = self.planner_log_size() - since
        self.record(label + ": planner log growth", "< %d KiB" % (limit >> 10), set(),
                    Outcome("OK" if grown < limit else "LOG_FLOOD", "%d bytes logged" % grown),
                    ok=grown < limit)

    def fake_node1_apply(self, during_prepare, nack_message):
        """Stands in for node1 (its certificate, its real GPUs and endpoints,
        in sync), starts a forced apply, runs during_prepare(prepare message)
        once node1's Prepare arrives, then vetoes it with
        Nack{WORKER_FAILED, nack_message}. Returns (outcome, the Prepare or
        None, whether the apply was aborted)."""
        c = self.c
        self.wait_settled(15)
        status = self.layout()
        committed = status.committed.version if status else ""
        got = {}
        prepared = threading.Event()

        def on_response(response, send):
            m = pb.agent.PlannerMessage.FromString(response)
            body = m.WhichOneof("body")
            if body == "welcome" and "replan" not in got:
                got["replan"] = True
                threading.Thread(target=lambda: self.replan(True, timeout=10),
                                 daemon=True).start()
            if body == "prepare" and "prepare" not in got:
                got["prepare"], got["send"] = m, send
                prepared.set()

        def act():
            if not prepared.wait(8):
                return
            m = got["prepare"]
            try:
                if during_prepare is not None:
                    during_prepare(m.prepare)
            finally:
                got["send"](agent_msg(nack=pb.agent.Nack(
                    nonce=m.nonce, version=prepare_version(m.prepare),
                    last_good_version=committed,
                    error=pb.agent.ErrorDetail(code=pb.agent.WORKER_FAILED,
                                               message=nack_message))))
                got["nacked"] = True
        actor = threading.Thread(target=act, daemon=True)
        actor.start()
        out = bidi(self.ch(c.who("node1")), CONNECT,
                   [agent_msg(hello=hello("node1", [2, 3], c.endpoints(1), committed))],
                   hold_s=6.0 if during_prepare else 3.0, on_response=on_response)
        actor.join(10)
        deadline = time.monotonic() + 5
        aborted = False
        while time.monotonic() < deadline:
            s = self.layout()
            if s is not None and not s.pending_version:
                aborted = s.committed.version == committed
                break
            time.sleep(0.1)
        return out, got.get("prepare") if got.get("nacked") else None, aborted

    def prepare_scoped_fetches(self, prepare):
        """Fetches of a transfer the Prepare names (source on node0, the
        destination on node1): only node1's certificate may have it."""
        c = self.c
        transfers = [t for t in prepare.transfers
                     if t.src_gpu // GPUS_PER_NODE == 0 and t.dst_gpu // GPUS_PER_NODE == 1]
        if not transfers:
            self.record("a forced apply moves an expert from node0 to node1", "a transfer",
                        set(), Outcome("NONE", "%d transfers, none node0 -> node1" % len(
                            prepare.transfers)), ok=False)
            return
        t = transfers[0]
        target = prepare.gpu_endpoints.get(t.src_gpu) or c.endpoints(0)[t.src_gpu]
        request = pb.worker.FetchExpertRequest(layout_version=t.src_version, layer=t.layer,
                                               slot=t.src_slot, expert=t.expert,
                                               dst_gpu=t.dst_gpu).SerializeToString()
        src_node = "node%d" % (t.src_gpu // GPUS_PER_NODE)

        def fetch(who, req=request, wait_permit=False):
            ch = open_channel(target, who, server_name=src_node)
            try:
                deadline = time.monotonic() + (2.0 if wait_permit else 0)
                while True:
                    out = server_stream(ch, FETCH, req, first_only=False, timeout=5)
                    # The source worker may get its Prepare a moment later.
                    if out.code != "UNAVAILABLE" or "Prepare" not in out.details or \
                            time.monotonic() >= deadline:
                        return out
                    time.sleep(0.05)
            finally:
                ch.close()
        label = "transfer %d->%d (layer %d, expert %d) named by a Prepare" % (
            t.src_gpu, t.dst_gpu, t.layer, t.expert)
        out = fetch(c.who("node1"), wait_permit=True)
        chunks = [pb.worker.ExpertChunk.FromString(r) for r in out.responses]
        got = sum(len(ch.data) for ch in chunks)
        self.record("FetchExpert %s, as node1 (its destination)" % label, "served (control)",
                    {"OK"}, out, ok=out.code == "OK" and got > 0 and chunks[-1].last,
                    note="%d bytes" % got)
        for who, name in ((c.who("node0"), "node0 (not the destination)"),
                          (c.who("reader1"), "a reader cert"),
                          (c.who("node9"), "cert 'node9' (no node)")):
            self.record("FetchExpert %s, as %s" % (label, name), "PERMISSION_DENIED",
                        {"PERMISSION_DENIED"}, fetch(who))
        other = pb.worker.FetchExpertRequest.FromString(request)
        other.dst_gpu = (t.dst_gpu + 1) % NUM_GPUS
        if other.dst_gpu // GPUS_PER_NODE == t.src_gpu // GPUS_PER_NODE:
            other.dst_gpu = t.dst_gpu
        other.expert = (t.expert + 1) % NUM_EXPERTS
        self.record("FetchExpert as node1 of another expert than the Prepare names",
                    "refused", {"UNAVAILABLE", "PERMISSION_DENIED", "FAILED_PRECONDITION",
                                "NOT_FOUND"}, fetch(c.who("node1"), other.SerializeToString()))

    def final_checks(self, bin_dir, verbose):
        """Committed state: the version never went backwards, every GPU is on
        it (the planner's view and each worker's own log), the next forced
        apply commits everywhere, and craftctl still reads the cluster."""
        c = self.c
        lost = len(self.version_went_back)
        for before, after in self.version_went_back:
            self.record("committed version never goes backwards", "monotonic", set(),
                        Outcome("BACKWARDS", "%d.%d -> %d.%d" % (before + after)), ok=False)
        settled = self.wait_settled(30)
        status = self.layout()
        committed = status.committed.version if status else "?"
        agents = self.agents() or {}
        planner_view = {n: list(a.gpu_versions) for n, a in sorted(agents.items())}
        time.sleep(0.8)  # a verify line per worker every 300 ms
        workers = {g: c.worker_version(g) for g in range(NUM_GPUS)}
        off = [g for g, v in workers.items() if v != committed]
        lost += (0 if settled else 1) + len(off)
        self.record("every GPU on the committed version %s" % committed, "all on it", set(),
                    Outcome("OK" if settled and not off else "SPLIT",
                            "planner %s, workers %s" % (planner_view, workers)),
                    ok=settled and not off)
        ok, text = self.forced_commit(timeout=30)
        final_status = self.layout()
        final = final_status.committed.version if final_status else "?"
        time.sleep(0.8)
        workers_after = {g: c.worker_version(g) for g in range(NUM_GPUS)}
        off_after = [g for g, v in workers_after.items() if v != final]
        lost += (0 if ok else 1) + len(off_after)
        self.record("a last forced apply commits on every worker", "committed", set(),
                    Outcome("OK" if ok and not off_after else "WEDGED",
                            "%s; workers %s" % (text, workers_after)),
                    ok=ok and not off_after)
        self.state_lost = lost
        self.final_text = "versions seen %s; every GPU on %s after the probes; then %s" % (
            " ".join("%d.%d" % v for v in self.versions_seen), committed, text)
        ctl = subprocess.run(
            [os.path.join(bin_dir, "craftctl"), "agents", "--planner", c.planner_target] + [
                "--tls_%s=%s" % (k, os.path.join(c.certs, f)) for k, f in
                (("cert", "ops.pem"), ("key", "ops.key"), ("ca", "ca.pem"))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        ctl_text = ctl.stdout.decode("utf-8", "replace")
        self.record("craftctl agents after the probes", "exit 0, both nodes", set(),
                    Outcome("OK" if ctl.returncode == 0 else "EXIT %d" % ctl.returncode,
                            " | ".join(ctl_text.strip().splitlines()[-2:])),
                    ok=ctl.returncode == 0 and "node0" in ctl_text and "node1" in ctl_text)
        if verbose:
            print(ctl_text, end="")

    def run_group(self, name, body):
        self.group = name
        print("== group %s" % name, flush=True)
        before = rss_mb(self.c.procs["planner"].pid)
        start = time.monotonic()
        try:
            body()
        except Exception:
            traceback.print_exc()
            self.record("group body raised (harness error)", "no exception", set(),
                        Outcome("HARNESS", traceback.format_exc().splitlines()[-1]))
        dead = self.liveness()
        after = rss_mb(self.c.procs["planner"].pid)
        self.group_stats[name] = {"crashes": dead, "rss_before": before, "rss_after": after,
                                  "seconds": time.monotonic() - start}
        if dead:
            print("  CRASHED OR HUNG after group %s: %s" % (name, ", ".join(dead)), flush=True)

    # ---- 1. malformed -------------------------------------------------------

    def group_malformed(self):
        rng = self.rng
        reader = self.ch(self.reader)
        valid = {
            "GetLayout": pb.placement.GetLayoutRequest(),
            "ListAgents": pb.placement.ListAgentsRequest(),
            "Explain": pb.placement.ExplainRequest(),
            "Replan": pb.placement.ReplanRequest(force=True),
            "Plan": self.plan_request(2, NUM_EXPERTS, 0, 0),
            "WatchLayout": pb.placement.WatchLayoutRequest(known_version="1.1"),
        }
        classes = {k: type(v) for k, v in valid.items()}
        for rpc in ("GetLayout", "ListAgents", "Explain", "Plan", "Replan", "WatchLayout"):
            blobs = []
            for i in range(4):
                blobs.append(("random %d B" % 0, bytes(rng.getrandbits(8)
                                                       for _ in range(rng.randint(1, 96)))))
            full = valid[rpc].SerializeToString()
            if len(full) > 1:
                for i in range(2):
                    cut = rng.randint(1, len(full) - 1)
                    blobs.append(("truncated at %d/%d" % (cut, len(full)), full[:cut]))
            blobs.append(("varint of 11 x 0xff", b"\x08" + b"\xff" * 11))
            blobs.append(("length prefix past the end", b"\x0a\xff\xff\xff\x7f" + b"ab"))
            blobs.append(("group wire types", b"\x0b\x0c\x13"))
            blobs.append(("field number 0", b"\x00\x01"))
            for label, data in blobs:
                if label.startswith("random"):
                    label = "random %d B" % len(data)
                should_parse = parses(classes[rpc], data)
                name = "%s: %s" % (rpc, label)
                if rpc == "WatchLayout":
                    out = server_stream(reader, PLACEMENT[rpc], data)
                else:
                    out = unary(reader, PLACEMENT[rpc], data, timeout=10)
                if should_parse:
                    # Parses (unknown fields are skipped): answered or refused
                    # on its content, never UNKNOWN, never a hang.
                    self.record(name, "answer or clear refusal", ANSWERED, out)
                else:
                    self.record(name, "refused (unparseable)", REFUSED - {"UNAVAILABLE"}, out)

        # Wrong wire types for known fields, and semantically bad values.
        layers_as_varint = field(1, 0, 7) + field(2, 0, 4)
        self.record("Plan: layers field as a varint",
                    "answer or clear refusal", ANSWERED,
                    unary(reader, PLACEMENT["Plan"], layers_as_varint))
        self.record("Plan: num_gpus as a length-delimited field", "answer or clear refusal",
                    ANSWERED, unary(reader, PLACEMENT["Plan"],
                                    self.plan_request(1, 16, 0, 0).SerializeToString()
                                    + field(2, 2, b"12345678")))
        self.record("Replan: force as a 64-bit fixed field", "PERMISSION_DENIED (reader)",
                    {"PERMISSION_DENIED"}, unary(reader, PLACEMENT["Replan"], field(1, 1, 1)))
        self.record("WatchLayout: known_version invalid UTF-8", "refused or answered",
                    ANSWERED, server_stream(reader, PLACEMENT["WatchLayout"],
                                            field(1, 2, b"\xff\xfe\xc0")))
        bad_plans = [
            ("Plan: negative counts", self.plan_request(2, 16, 0, 0, fill=-5)),
            ("Plan: ragged rows", self.ragged_plan()),
            ("Plan: num_gpus = -1", self.plan_request(1, 16, -1, 1)),
            ("Plan: num_gpus = 2^31-1", self.plan_request(1, 16, (1 << 31) - 1, 1)),
            ("Plan: num_nodes not dividing num_gpus", self.plan_request(1, 16, 8, 3)),
            ("Plan: unknown algorithm", self.plan_request(1, 16, 0, 0, algorithm="rm -rf /")),
            ("Plan: budget = -7", self.plan_request(1, 16, 0, 0, budget=-7)),
            ("Plan: counts = 2^62", self.plan_request(1, 16, 0, 0, fill=1 << 62)),
            ("Plan: no layers", pb.placement.PlanRequest()),
        ]
        for name, request in bad_plans:
            self.record(name, "INVALID_ARGUMENT", {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
                        unary(reader, PLACEMENT["Plan"], request.SerializeToString()))
        # A budget beyond every candidate is plannable (it just binds nothing).
        out = unary(reader, PLACEMENT["Plan"], self.plan_request(
            1, 16, 0, 0, budget=(1 << 31) - 1).SerializeToString())
        self.record("Plan: budget = 2^31-1", "answer or refusal in < 2 s", ANSWERED, out,
                    ok=out.code in ANSWERED and out.elapsed < 2.0,
                    note="%.0f ms" % (out.elapsed * 1000))

        # Strings of 1 MiB where the planner might echo them in its answer
        # or its log (each on its own connection: an oversized status breaks
        # the connection it travels on).
        for name, path, data, expect in (
                ("Plan: 1 MiB algorithm name", PLACEMENT["Plan"], self.plan_request(
                    1, 16, 0, 0, algorithm="a" * (1 << 20)).SerializeToString(),
                 {"INVALID_ARGUMENT"}),
                ("WatchLayout: 1 MiB known_version", PLACEMENT["WatchLayout"],
                 pb.placement.WatchLayoutRequest(known_version="9" * (1 << 20))
                 .SerializeToString(), {"OPEN", "INVALID_ARGUMENT"})):
            size = self.planner_log_size()
            ch = open_channel(self.c.planner_target, self.reader)
            try:
                out = (server_stream(ch, path, data) if "Watch" in name
                       else unary(ch, path, data))
            finally:
                ch.close()
            self.record(name, "refused or answered, bounded", expect, out)
            self.check_log_growth(name, size)

        # Huge repeated fields (under the 64 MiB message limit).
        big = pb.placement.PlanRequest(num_gpus=0)
        big.layers.add().counts.extend([0] * 5_000_000)
        out = unary(reader, PLACEMENT["Plan"], big.SerializeToString(), timeout=20)
        self.record("Plan: 1 layer x 5,000,000 experts on 4 GPUs (5 MB)",
                    "RESOURCE_EXHAUSTED in < 2 s", {"RESOURCE_EXHAUSTED"}, out,
                    ok=out.code == "RESOURCE_EXHAUSTED" and out.elapsed < 2.0,
                    note="%.0f ms" % (out.elapsed * 1000))
        many_layers = field(1, 2, b"") * 2_000_000  # 2,000,000 empty layers, 4 MB
        self.record("Plan: 2,000,000 empty layers", "INVALID_ARGUMENT",
                    {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
                    unary(reader, PLACEMENT["Plan"], many_layers, timeout=20))
        unknown = field(999, 2, b"x" * (8 << 20))
        self.record("GetLayout: 8 MiB unknown field", "answer or clear refusal", ANSWERED,
                    unary(reader, PLACEMENT["GetLayout"], unknown, timeout=20))

        # Just above the planner's message limit.
        over = field(999, 2, b"\0" * (PLANNER_MAX_MESSAGE + 16))
        self.record("Plan: 64 MiB + 20 B request", "RESOURCE_EXHAUSTED",
                    {"RESOURCE_EXHAUSTED"},
                    unary(reader, PLACEMENT["Plan"], over, timeout=30))
        self.record("Connect: 64 MiB + 20 B first message", "RESOURCE_EXHAUSTED",
                    {"RESOURCE_EXHAUSTED"},
                    bidi(reader, CONNECT, [over], hold_s=10, timeout=30))
        del over

        # Unknown methods and services.
        self.record("unknown method on the planner", "UNIMPLEMENTED", {"UNIMPLEMENTED"},
                    unary(reader, "/craft.v1.PlacementService/DropTables", b""))
        self.record("NodeAgent.Attach on the planner port", "UNIMPLEMENTED", {"UNIMPLEMENTED"},
                    bidi(reader, ATTACH, [b""], hold_s=2))

        # AgentGateway.Connect: garbage as the first message (a reader's
        # certificate: no node identity, so it can never become a node).
        # A message that does not parse ends the stream (the server reads it
        # as the end of the client's side, so the status may be a bare OK).
        for i in range(6):
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
            expect = REFUSED - {"UNAVAILABLE"}
            if not parses(pb.agent.AgentMessage, data):
                expect = expect | {"OK"}
            self.record("Connect: random first message %d B" % len(data), "stream ended",
                        expect, bidi(reader, CONNECT, [data], hold_s=3),
                        note="bytes %s" % data.hex() if self.verbose else "")
        first_msgs = [
            ("Connect: empty first message", b""),
            ("Connect: Ack before any hello", agent_msg(ack=pb.agent.Ack(nonce="x"))),
            ("Connect: NodeLoad before any hello",
             agent_msg(load=pb.load.NodeLoad())),
            ("Connect: hello field as a varint", field(1, 0, 1)),
            ("Connect: truncated hello",
             agent_msg(hello=hello("node1", [2, 3]))[:9]),
            ("Connect: hello as reader1 for reader1", agent_msg(hello=hello("reader1", [2]))),
        ]
        for name, data in first_msgs:
            expect = REFUSED - {"UNAVAILABLE"}
            if not parses(pb.agent.AgentMessage, data):
                expect = expect | {"OK"}
            self.record(name, "stream ended", expect, bidi(reader, CONNECT, [data], hold_s=3))

        # After a valid hello (node1's certificate): messages that parse but are
        # wrong keep the stream (windows are dropped and counted); unparseable
        # ones end only that stream. node1's real agent is replaced meanwhile
        # and comes back on its own.
        node1 = self.ch(self.c.who("node1"))
        status = self.layout()
        committed = status.committed.version if status else ""
        h = agent_msg(hello=hello("node1", [2, 3], self.c.endpoints(1), committed))
        bad_windows = []
        now_ms = int(time.time() * 1000)
        wid = now_ms // WINDOW_MS
        for gpu, version, layers, counts, wid_, dur in [
                (2, committed, NUM_LAYERS, 3, wid, WINDOW_MS),   # wrong slot count
                (2, "9.9", NUM_LAYERS, 4, wid, WINDOW_MS),        # unknown version
                (0, committed, NUM_LAYERS, 4, wid, WINDOW_MS),    # another node's GPU
                (77, committed, NUM_LAYERS, 4, wid, WINDOW_MS),   # GPU out of range
                (3, committed, 1, 4, wid, WINDOW_MS),             # wrong layer count
                (3, committed, NUM_LAYERS, 4, -1, WINDOW_MS),     # negative id
                (3, committed, NUM_LAYERS, 4, wid, 0)]:           # zero duration
            w = pb.load.GpuWindow(gpu=gpu, layout_version=version, window_id=wid_,
                                  start_unix_ms=wid_ * WINDOW_MS, duration_ms=dur)
            for _ in range(layers):
                w.layers.add().counts.extend([-1 if gpu == 3 else 1] * counts)
            bad_windows.append(agent_msg(load=pb.load.NodeLoad(gpus=[w])))
        huge_load = pb.load.NodeLoad()
        for i in range(20000):
            huge_load.gpus.add(gpu=2, layout_version=committed, window_id=i)
        messages = [h] + bad_windows + [
            agent_msg(load=huge_load.__class__.FromString(huge_load.SerializeToString())),
            b"",  # an AgentMessage with no body: ignored
            agent_msg(ack=pb.agent.Ack(nonce="not-a-nonce", version="1.1", phase=2)),
            agent_msg(nack=pb.agent.Nack(nonce="nope", version="7.7")),
        ]
        self.record("Connect(node1): 7 bad windows, 20,000 windows, empty, stray Ack/Nack",
                    "stream kept (or replaced)", {"OPEN", "ABORTED"},
                    bidi(node1, CONNECT, messages, hold_s=1.0))
        self.record("Connect(node1): second AgentHello on a stream", "INVALID_ARGUMENT",
                    {"INVALID_ARGUMENT"}, bidi(node1, CONNECT, [h, h], hold_s=3))
        for i in range(3):
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(8, 64)))
            if parses(pb.agent.AgentMessage, data):
                continue
            self.record("Connect(node1): unparseable message %d B after hello" % len(data),
                        "only this stream ends", (REFUSED - {"UNAVAILABLE"}) | {"OK"},
                        bidi(node1, CONNECT, [h, data], hold_s=3))

        # A worker's transfer port: 16 KiB request limit, garbage requests.
        w0 = open_channel("127.0.0.1:%d" % self.c.transfer_ports[0], self.c.who("node1"),
                          server_name="node0")
        try:
            req = pb.worker.FetchExpertRequest(layout_version="v" * (WORKER_MAX_MESSAGE + 64),
                                               dst_gpu=2)
            self.record("FetchExpert: 16 KiB + 70 B request", "RESOURCE_EXHAUSTED",
                        {"RESOURCE_EXHAUSTED"},
                        server_stream(w0, FETCH, req.SerializeToString(), first_only=False))
            for i in range(3):
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 48)))
                expect = ANSWERED - {"OK", "OPEN"} if parses(pb.worker.FetchExpertRequest,
                                                             data) else REFUSED
                self.record("FetchExpert: random %d B" % len(data), "refused", expect,
                            server_stream(w0, FETCH, data, first_only=False))
        finally:
            w0.close()

        # The agent's Unix socket: garbage as a worker's first message.
        sock = grpc.insecure_channel("unix:%s/agent0.sock" % self.c.dir)
        try:
            for i in range(2):
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(4, 64)))
                self.record("Attach(agent0 socket): random %d B" % len(data), "refused",
                            REFUSED, bidi(sock, ATTACH, [data], hold_s=3))
        finally:
            sock.close()
        if not self.wait_settled(20):
            self.notes.append("malformed: the cluster did not settle within 20 s afterwards")

    def plan_request(self, layers, experts, gpus, nodes, fill=None, algorithm="", budget=-1):
        rng = random.Random(SEED + layers * 7 + experts)
        r = pb.placement.PlanRequest(num_gpus=gpus, num_nodes=nodes, algorithm=algorithm,
                                     budget=budget)
        for _ in range(layers):
            if fill is None:
                r.layers.add().counts.extend(
                    int(1000 * rng.paretovariate(1.2)) for _ in range(experts))
            else:
                r.layers.add().counts.extend([fill] * experts)
        return r

    def ragged_plan(self):
        r = pb.placement.PlanRequest()
        r.layers.add().counts.extend([5] * 16)
        r.layers.add().counts.extend([5] * 15)
        return r

    # ---- 2. identity --------------------------------------------------------

    def group_identity(self):
        c = self.c
        plaintext = Identity("plaintext", plaintext=True)
        no_cert = Identity("no-cert", ca=os.path.join(c.certs, "ca.pem"))
        get = pb.placement.GetLayoutRequest().SerializeToString()
        for who, label in ((plaintext, "plaintext client"),
                           (no_cert, "TLS client without a certificate"),
                           (c.stranger("ops"), "another CA's cert naming 'ops'")):
            ch = open_channel(c.planner_target, who)
            try:
                self.record("GetLayout: %s" % label, "handshake refused", HANDSHAKE,
                            unary(ch, PLACEMENT["GetLayout"], get))
                self.record("Replan --force: %s" % label, "handshake refused", HANDSHAKE,
                            unary(ch, PLACEMENT["Replan"], pb.placement.ReplanRequest(
                                force=True).SerializeToString()))
            finally:
                ch.close()
        ch = open_channel(c.planner_target, c.stranger("node0"))
        try:
            self.record("Connect as node0 with another CA's node0 cert", "handshake refused",
                        HANDSHAKE, bidi(ch, CONNECT, [agent_msg(
                            hello=hello("node0", [0, 1], c.endpoints(0)))], hold_s=3))
        finally:
            ch.close()
        ch = open_channel(c.planner_target, plaintext)
        try:
            self.record("Connect as node0 over plaintext", "handshake refused", HANDSHAKE,
                        bidi(ch, CONNECT, [agent_msg(hello=hello("node0", [0, 1]))], hold_s=3))
        finally:
            ch.close()
        # The server's name is checked by the client too: a planner address
        # whose certificate does not name what we expect.
        ch = open_channel(c.planner_target, self.ops, server_name="not-the-planner")
        try:
            self.record("GetLayout expecting another server name", "handshake refused",
                        HANDSHAKE, unary(ch, PLACEMENT["GetLayout"], get))
        finally:
            ch.close()

        status = self.layout()
        committed = status.committed.version if status else ""
        node0, node1 = self.ch(c.who("node0")), self.ch(c.who("node1"))
        node9, reader = self.ch(c.who("node9")), self.ch(self.reader)
        claims = [
            (node1, "node1's cert claiming node0 (GPUs 0,1)", hello("node0", [0, 1],
                                                                   c.endpoints(0), committed)),
            (node0, "node0's cert claiming node1's GPUs 2,3", hello("node0", [2, 3])),
            (node0, "node0's cert claiming GPUs 1,2", hello("node0", [1, 2])),
            (node9, "cert 'node9' (not in security.nodes) as node9", hello("node9", [2])),
            (node9, "cert 'node9' claiming node1", hello("node1", [2, 3])),
            (reader, "reader cert claiming node0", hello("node0", [0, 1])),
            (self.ch(self.ops), "admin cert claiming node1", hello("node1", [2, 3])),
        ]
        for ch, label, h in claims:
            self.record("Connect: " + label, "PERMISSION_DENIED", {"PERMISSION_DENIED"},
                        bidi(ch, CONNECT, [agent_msg(hello=h)], hold_s=3))
        # Authorization happens before the hello replaces anything: node0's
        # real agent must still be connected.
        agents = self.agents() or {}
        self.record("node0's agent still connected after the refused claims", "connected",
                    set(), Outcome("OK" if agents.get("node0") and agents["node0"].connected
                                   else "DISCONNECTED"), ok=bool(
                                       agents.get("node0") and agents["node0"].connected))

        # Operator roles.
        replan = pb.placement.ReplanRequest(force=True).SerializeToString()
        self.record("Replan --force as a reader cert", "PERMISSION_DENIED",
                    {"PERMISSION_DENIED"}, unary(reader, PLACEMENT["Replan"], replan))
        self.record("Replan --force as node0's agent cert", "PERMISSION_DENIED",
                    {"PERMISSION_DENIED"}, unary(node0, PLACEMENT["Replan"], replan))
        self.record("Replan --force as reader with a wrong bearer token", "PERMISSION_DENIED",
                    {"PERMISSION_DENIED"},
                    unary(reader, PLACEMENT["Replan"], replan,
                          metadata=[("authorization", "Bearer " + "0" * len(c.token))]))
        self.record("Replan --force as reader with a token prefix", "PERMISSION_DENIED",
                    {"PERMISSION_DENIED"},
                    unary(reader, PLACEMENT["Replan"], replan,
                          metadata=[("authorization", "Bearer " + c.token[:-1])]))
        self.record("Replan --force as reader, token without 'Bearer '", "PERMISSION_DENIED",
                    {"PERMISSION_DENIED"},
                    unary(reader, PLACEMENT["Replan"], replan,
                          metadata=[("authorization", c.token)]))
        self.record("Replan (no force) as reader with the right token", "OK (control)",
                    {"OK"}, self.replan(False, self.reader,
                                        metadata=[("authorization", "Bearer " + c.token)]))
        self.record("Replan (no force) as admin cert", "OK (control)", {"OK"},
                    self.replan(False))

        # Worker transfer ports.
        versions = status.committed if status else None
        expert0 = versions.layers[0].phy2log[0] if versions and versions.layers else 0
        fetch = pb.worker.FetchExpertRequest(layout_version=committed, layer=0, slot=0,
                                             expert=expert0, dst_gpu=2).SerializeToString()
        target = "127.0.0.1:%d" % c.transfer_ports[0]
        for who, label, expect in (
                (plaintext, "plaintext", HANDSHAKE),
                (no_cert, "TLS without a certificate", HANDSHAKE),
                (c.stranger("node1"), "another CA's node1 cert", HANDSHAKE),
                (c.who("reader1"), "reader cert (no node)", {"PERMISSION_DENIED", "UNAVAILABLE"}),
                (c.who("node1"), "node1 cert, no Prepare names it",
                 {"UNAVAILABLE", "PERMISSION_DENIED"}),
                (c.who("node0"), "node0 cert (same node), no Prepare",
                 {"UNAVAILABLE", "PERMISSION_DENIED"})):
            ch = open_channel(target, who, server_name="node0")
            try:
                out = server_stream(ch, FETCH, fetch, first_only=False)
                self.record("FetchExpert from worker0: " + label, "refused", expect, out)
            finally:
                ch.close()
        ch = open_channel(target, c.who("node1"), server_name="node0")
        try:
            for dst in (0, 3, -1, 1 << 30):
                req = pb.worker.FetchExpertRequest(layout_version=committed, layer=0, slot=0,
                                                   expert=expert0, dst_gpu=dst)
                self.record("FetchExpert from worker0 as node1, dst_gpu=%d" % dst, "refused",
                            {"UNAVAILABLE", "PERMISSION_DENIED", "INVALID_ARGUMENT"},
                            server_stream(ch, FETCH, req.SerializeToString(), first_only=False))
        finally:
            ch.close()

        # The agents' health ports.
        for who, label, expect in ((plaintext, "plaintext", HANDSHAKE),
                                   (c.stranger("node0"), "another CA's cert", HANDSHAKE),
                                   (c.who("reader1"), "a cluster cert (control)", {"OK"})):
            self.record("agent0 health: " + label, "refused" if expect != {"OK"} else "SERVING",
                        expect, self.health(0, who))

        # A second worker claiming an attached GPU, and another node's GPU.
        sock = grpc.insecure_channel("unix:%s/agent0.sock" % c.dir)
        try:
            for gpu, label, expect in ((0, "GPU 0 (attached)", {"ALREADY_EXISTS"}),
                                       (2, "GPU 2 (node1's)", {"INVALID_ARGUMENT"})):
                wh = pb.worker.WorkerMessage()
                wh.hello.gpu = gpu
                wh.hello.memory_bytes = 1 << 30
                wh.hello.transfer_endpoint = "127.0.0.1:1"
                wh.hello.model.num_layers = NUM_LAYERS
                wh.hello.model.num_experts = NUM_EXPERTS
                wh.hello.model.top_k = TOP_K
                wh.hello.model.bytes_per_expert = 4096
                self.record("Attach(agent0 socket): second worker claiming " + label, "refused",
                            expect, bidi(sock, ATTACH, [wh.SerializeToString()], hold_s=3))
        finally:
            sock.close()

        # Transfers a Prepare names, fetched by the wrong peers (a forced
        # apply in which we stand in for node1 and veto it afterwards).
        out, prepare, aborted = self.fake_node1_apply(self.prepare_scoped_fetches,
                                                      "probe: vetoed after the fetch probes")
        self.record("Connect(node1 cert): forced apply received, then vetoed", "apply aborted",
                    {"OPEN", "ABORTED"}, out,
                    ok=out.code in ("OPEN", "ABORTED") and prepare is not None and aborted)

        # A second agent stream for a connected node, with that node's cert:
        # the documented policy is that it replaces the first. The real agent
        # must come back, and the cluster must stay consistent.
        self.wait_settled(15)
        status = self.layout()
        committed = status.committed.version if status else ""
        out = bidi(node0, CONNECT, [agent_msg(hello=hello("node0", [0, 1], c.endpoints(0),
                                                          committed))], hold_s=1.0)
        got_welcome = any(pb.agent.PlannerMessage.FromString(r).HasField("welcome")
                          for r in out.responses)
        self.record("Connect: second stream as node0 with node0's cert", "accepted, Welcome",
                    {"OPEN", "ABORTED"}, out, ok=out.code in ("OPEN", "ABORTED") and got_welcome)
        t0 = time.monotonic()
        back = self.wait_settled(20)
        self.record("node0's real agent reconnects after the takeover", "back within 20 s",
                    set(), Outcome("OK" if back else "NOT_BACK",
                                   "%.1f s" % (time.monotonic() - t0)), ok=back)
        ok, text = self.forced_commit()
        self.record("Replan --force commits after the takeover", "committed everywhere", set(),
                    Outcome("OK" if ok else "FAILED", text), ok=ok)

    # ---- 3. bounds ----------------------------------------------------------

    def group_bounds(self):
        c = self.c
        node0, node1 = self.ch(c.who("node0")), self.ch(c.who("node1"))
        reader = self.ch(self.reader)
        status = self.layout()
        committed = status.committed.version if status else ""

        def oversized_hello(label, who, h, expect):
            size = self.planner_log_size()
            ch = open_channel(c.planner_target, who)  # its own connection
            try:
                out = bidi(ch, CONNECT, [agent_msg(hello=h)], hold_s=3)
            finally:
                ch.close()
            self.record(label, "refused", expect, out)
            self.check_log_growth(label, size)

        h = hello("node0", [0, 1], c.endpoints(0), committed)
        h.committed_version = "9" * (1 << 20)
        oversized_hello("Connect(node0 cert): hello with a 1 MiB committed_version",
                        c.who("node0"), h, {"INVALID_ARGUMENT"})
        oversized_hello("Connect(node0 cert): hello with a 1 MiB node name", c.who("node0"),
                        hello("n" * (1 << 20), [0, 1]), {"PERMISSION_DENIED", "INVALID_ARGUMENT"})
        oversized_hello("Connect(reader cert): hello with a 1 MiB node name", self.reader,
                        hello("r" * (1 << 20), [0, 1]), {"PERMISSION_DENIED", "INVALID_ARGUMENT"})
        h = hello("node0", [0, 1], c.endpoints(0), committed)
        h.gpus[0].transfer_endpoint = "h" * (1 << 20)
        self.record("Connect(node0 cert): hello with a 1 MiB transfer endpoint", "refused",
                    {"INVALID_ARGUMENT"}, bidi(node0, CONNECT, [agent_msg(hello=h)], hold_s=3))
        h = hello("node1", list(range(100000)))
        self.record("Connect(node1 cert): hello with 100,000 GPUs", "refused",
                    {"INVALID_ARGUMENT", "PERMISSION_DENIED"},
                    bidi(node1, CONNECT, [agent_msg(hello=h)], hold_s=3))
        h = hello("node0", [0, 1], c.endpoints(0), committed)
        h.gpus[0].transfer_group_id = b"\x01" * 129
        self.record("Connect(node0 cert): 129-byte transfer group id", "refused",
                    {"INVALID_ARGUMENT"}, bidi(node0, CONNECT, [agent_msg(hello=h)], hold_s=3))
        h = hello("node0", [0, 1], c.endpoints(0), committed)
        h.model.num_layers = NUM_LAYERS + 1
        self.record("Connect(node0 cert): hello with another model shape", "refused",
                    {"INVALID_ARGUMENT"}, bidi(node0, CONNECT, [agent_msg(hello=h)], hold_s=3))
        agents = self.agents() or {}
        long_names = [n for n in agents if len(n) > 253]
        self.record("ListAgents after the oversized hellos", "no long names, small", set(),
                    Outcome("OK" if agents and not long_names else "BAD",
                            "%d agents" % len(agents)), ok=bool(agents) and not long_names)
        self.wait_settled(15)

        # Epoch 2^62 from a legit node certificate: a claim that fences the
        # planner only while that stream lasts. Meanwhile a forced Replan
        # applies nothing; once the stream is gone one must commit.
        status = self.layout()
        committed = status.committed.version if status else ""
        fenced = {}

        def during(response, send):
            if "replan" not in fenced:
                fenced["replan"] = self.replan(True, timeout=10)
        out = bidi(node0, CONNECT, [agent_msg(hello=hello("node0", [0, 1], c.endpoints(0),
                                                          committed, epoch=1 << 62))],
                   hold_s=1.5, on_response=during)
        self.record("Connect(node0 cert): hello claiming epoch 2^62", "accepted (a claim)",
                    {"OPEN", "ABORTED"}, out)
        during_replan = fenced.get("replan", Outcome("NOT_RUN"))
        version = ""
        if during_replan.code == "OK":
            r = pb.placement.ReplanResponse.FromString(during_replan.responses[0])
            version, during_replan.details = r.version, "version=%r decision=%r" % (
                r.version, r.decision)
        self.record("Replan --force while that stream claims epoch 2^62", "applies nothing",
                    {"OK"}, during_replan, ok=during_replan.code == "OK" and not version)
        t0 = time.monotonic()
        ok, text = self.forced_commit(timeout=30)
        self.record("Replan --force commits after the epoch-2^62 stream", "committed", set(),
                    Outcome("OK" if ok else "FAILED", "%s (%.1f s)" % (
                        text, time.monotonic() - t0)), ok=ok)

        # A stray Nack{STALE_EPOCH} answering the planner's resync: node1's
        # cert, a hello claiming a stale committed version (so the planner
        # sends a Commit we can answer with the right nonce).
        status = self.layout()
        committed = status.committed.version if status else ""
        answered = {}

        def nack(response, send):
            m = pb.agent.PlannerMessage.FromString(response)
            if m.WhichOneof("body") in ("commit", "prepare") and "done" not in answered:
                answered["done"] = m.WhichOneof("body")
                send(agent_msg(nack=pb.agent.Nack(
                    nonce=m.nonce, version=prepare_version(m.prepare)
                    if m.WhichOneof("body") == "prepare" else m.commit.version,
                    error=pb.agent.ErrorDetail(code=pb.agent.STALE_EPOCH,
                                               message="probe: a stray stale-epoch claim"))))
        out = bidi(node1, CONNECT, [agent_msg(hello=hello("node1", [2, 3], c.endpoints(1),
                                                          "0.0"))], hold_s=1.5,
                   on_response=nack)
        self.record("Connect(node1 cert): Nack{STALE_EPOCH} to the planner's resync",
                    "stream kept; nack sent", {"OPEN", "ABORTED"}, out,
                    ok=out.code in ("OPEN", "ABORTED") and "done" in answered,
                    note="answered a %s" % answered.get("done", "nothing"))
        # The same, answered with a Nack whose strings are 1 MiB.
        answered.clear()

        def big_nack(response, send):
            m = pb.agent.PlannerMessage.FromString(response)
            if m.WhichOneof("body") == "commit" and "done" not in answered:
                answered["done"] = "commit"
                n = pb.agent.Nack(nonce=m.nonce, version=m.commit.version,
                                  last_good_version="0.0",
                                  error=pb.agent.ErrorDetail(code=pb.agent.WORKER_FAILED,
                                                             message="m" * (1 << 20)))
                for gpu in (2, 3):
                    n.error.gpus.add(gpu=gpu, message="g" * (256 << 10))
                send(agent_msg(nack=n))
        size = self.planner_log_size()
        out = bidi(node1, CONNECT, [agent_msg(hello=hello("node1", [2, 3], c.endpoints(1),
                                                          "0.0"))], hold_s=1.5,
                   on_response=big_nack)
        self.record("Connect(node1 cert): Nack with 1.5 MiB of error text to the resync",
                    "stream kept; nack sent", {"OPEN", "ABORTED"}, out,
                    ok=out.code in ("OPEN", "ABORTED") and "done" in answered)
        self.check_log_growth("Connect(node1 cert): Nack with 1.5 MiB of error text", size)
        # A node vetoing an apply with a Nack of 1 MiB: the apply aborts; the
        # text must not travel to the other nodes (Abort.reason) nor fill logs.
        size = self.planner_log_size()
        agent0_log = os.path.join(c.dir, "agent0.log")
        agent0_size = os.path.getsize(agent0_log)
        out, prepare, aborted = self.fake_node1_apply(None, "v" * (1 << 20))
        self.record("Connect(node1 cert): Nack{WORKER_FAILED, 1 MiB} vetoes a Prepare",
                    "apply aborted", {"OPEN", "ABORTED"}, out,
                    ok=out.code in ("OPEN", "ABORTED") and prepare is not None and aborted,
                    note="prepare %s, aborted %s" % (
                        prepare_version(prepare.prepare) if prepare else None, aborted))
        self.check_log_growth("Nack{WORKER_FAILED, 1 MiB} to a Prepare", size)
        grown = os.path.getsize(agent0_log) - agent0_size
        self.record("Nack{WORKER_FAILED, 1 MiB}: node0's agent log growth", "< 16 KiB", set(),
                    Outcome("OK" if grown < (16 << 10) else "LOG_FLOOD",
                            "%d bytes logged by agent0" % grown), ok=grown < (16 << 10))
        t0 = time.monotonic()
        ok, text = self.forced_commit(timeout=30)
        self.record("Replan --force commits after the stray Nacks and the veto", "committed",
                    set(), Outcome("OK" if ok else "FAILED", "%s (%.1f s)" % (
                        text, time.monotonic() - t0)), ok=ok)

        # Dry-run Plan bounds.
        for layers, experts, gpus, nodes, label in (
                (1, 100_000, 4096, 512, "1 x 100,000 experts on 4096 GPUs"),
                (1, 1_000_000, 4096, 512, "1 x 1,000,000 experts on 4096 GPUs (8 MB)")):
            r = self.plan_request(layers, experts, gpus, nodes, fill=3)
            out = unary(reader, PLACEMENT["Plan"], r.SerializeToString(), timeout=30)
            fast = out.elapsed < 1.0
            self.record("Plan: " + label, "RESOURCE_EXHAUSTED within 1 s",
                        {"RESOURCE_EXHAUSTED"}, out, ok=out.code == "RESOURCE_EXHAUSTED" and fast,
                        note="%.0f ms" % (out.elapsed * 1000))
        # The largest work allowed, spent on experts: time and memory.
        big = pb.placement.PlanRequest(num_gpus=0)
        candidates = 2 + NUM_GPUS.bit_length() - 1
        big.layers.add().counts.extend([1] * (MAX_PLAN_WORK // (NUM_GPUS * candidates)))
        rss0 = rss_mb(c.procs["planner"].pid)
        out = unary(reader, PLACEMENT["Plan"], big.SerializeToString(), timeout=60)
        rss1 = rss_mb(c.procs["planner"].pid)
        self.record("Plan: 1 x %d experts on %d GPUs (max_plan_work, allowed)" % (
            len(big.layers[0].counts), NUM_GPUS), "OK or RESOURCE_EXHAUSTED in < 20 s",
            {"OK", "RESOURCE_EXHAUSTED"}, out, ok=out.code in ("OK", "RESOURCE_EXHAUSTED")
            and out.elapsed < 20, note="%.1f s, planner RSS %.0f -> %.0f MB" % (
                out.elapsed, rss0, rss1))
        self.notes.append("an allowed dry run of 1 x %d experts on %d GPUs took %.1f s; "
                          "planner RSS %.0f -> %.0f MB" % (len(big.layers[0].counts), NUM_GPUS,
                                                           out.elapsed, rss0, rss1))
        del big
        layers, experts, gpus, nodes = flood_shape()
        r = self.plan_request(layers, experts + 8, gpus, nodes)
        out = unary(reader, PLACEMENT["Plan"], r.SerializeToString(), timeout=30)
        self.record("Plan: just over limits.max_plan_work", "RESOURCE_EXHAUSTED",
                    {"RESOURCE_EXHAUSTED"}, out, note="%.0f ms" % (out.elapsed * 1000))

        # Load windows with ids near INT64_MAX (and other bad clocks) from
        # node0's certificate: refused, counted for node0 alone; node1 keeps
        # being ingested.
        self.wait_settled(15)
        agents = self.agents() or {}
        rejected0 = agents["node0"].windows_rejected if "node0" in agents else 0
        rejected1 = agents["node1"].windows_rejected if "node1" in agents else 0
        s0 = self.layout()
        t_start = time.monotonic()
        ingested_before = s0.windows_ingested if s0 else 0
        time.sleep(2.0)
        s1 = self.layout()
        base_rate = (s1.windows_ingested - ingested_before) / (time.monotonic() - t_start)
        committed = s1.committed.version
        layout = s1.committed
        now_ms = int(time.time() * 1000)
        poison = []
        specs = []
        for k in range(8):
            specs.append((INT64_MAX - k, INT64_MAX, 1))              # id and start at the end
            specs.append((INT64_MAX // WINDOW_MS - k, (INT64_MAX // WINDOW_MS - k) * WINDOW_MS,
                          WINDOW_MS))                                # consistent, far future
        specs.append((now_ms // WINDOW_MS + 10**6, (now_ms // WINDOW_MS + 10**6) * WINDOW_MS,
                      WINDOW_MS))                                    # 2.3 days ahead
        specs.append((INT64_MAX, now_ms, WINDOW_MS))                 # id and start disagree
        specs.append((now_ms // WINDOW_MS, now_ms // WINDOW_MS * WINDOW_MS, -WINDOW_MS))
        specs.append((1, WINDOW_MS, WINDOW_MS))                      # 1970
        for wid, start, dur in specs:
            load = pb.load.NodeLoad()
            for gpu in (0, 1):
                w = load.gpus.add(gpu=gpu, layout_version=committed, window_id=wid,
                                  start_unix_ms=start, duration_ms=dur)
                for layer in layout.layers:
                    w.layers.add().counts.extend([100] * layer.slots_per_gpu[gpu])
            poison.append(agent_msg(load=load))
        sent = 2 * len(specs)
        t_poison = time.monotonic()
        ingested_at_poison = self.layout().windows_ingested
        out = bidi(node0, CONNECT, [agent_msg(hello=hello("node0", [0, 1], c.endpoints(0),
                                                          committed))] + poison, hold_s=1.0)
        self.record("Connect(node0 cert): %d windows with bad clocks (ids near INT64_MAX)"
                    % sent, "stream kept; windows refused", {"OPEN", "ABORTED"}, out)
        time.sleep(2.0)
        s2 = self.layout()
        poisoned_rate = (s2.windows_ingested - ingested_at_poison) / (time.monotonic() - t_poison)
        agents = self.agents() or {}
        d0 = agents["node0"].windows_rejected - rejected0 if "node0" in agents else -1
        d1 = agents["node1"].windows_rejected - rejected1 if "node1" in agents else -1
        self.record("node0's windows_rejected counts the bad windows", ">= %d" % sent, set(),
                    Outcome("OK" if d0 >= sent else "MISCOUNTED", "+%d" % d0), ok=d0 >= sent)
        self.record("node1's windows_rejected unchanged", "+0", set(),
                    Outcome("OK" if d1 == 0 else "CHANGED", "+%d" % d1), ok=d1 == 0)
        # node1 alone is half the cluster's GPUs: while node0's stream was
        # ours (and its agent waits to reconnect), at least 40% of the
        # unloaded rate must still come in.
        ok = poisoned_rate >= 0.4 * base_rate and s2.windows_ingested > ingested_at_poison
        self.record("windows_ingested keeps growing while node0 poisons", ">= 40% of before",
                    set(), Outcome("OK" if ok else "STALLED", "%.1f/s vs %.1f/s before" % (
                        poisoned_rate, base_rate)), ok=ok)
        back = self.wait_settled(20)
        s3 = self.layout()
        t3 = time.monotonic()
        time.sleep(2.0)
        s4 = self.layout()
        rate_after = (s4.windows_ingested - s3.windows_ingested) / (time.monotonic() - t3)
        ok = back and rate_after >= 0.8 * base_rate
        self.record("ingestion back to full rate once node0's agent is back", ">= 80%",
                    set(), Outcome("OK" if ok else "SLOW", "%.1f/s vs %.1f/s before" % (
                        rate_after, base_rate)), ok=ok)
        self.poison_rates = (base_rate, poisoned_rate, rate_after)

    # ---- 4. flood -------------------------------------------------------------

    def group_flood(self, flood_threads, gen_dir, script):
        reader = self.ch(self.reader)

        def measure(seconds_getlayout=4.0, replans=10):
            latencies = []
            for _ in range(replans):
                out = self.replan(False)
                if out.code == "OK":
                    latencies.append(out.elapsed)
            gets = []
            deadline = time.monotonic() + seconds_getlayout
            req = pb.placement.GetLayoutRequest().SerializeToString()
            while time.monotonic() < deadline:
                out = unary(reader, PLACEMENT["GetLayout"], req, timeout=10)
                if out.code == "OK":
                    gets.append(out.elapsed)
            gets.sort()
            p99 = gets[min(len(gets) - 1, int(0.99 * len(gets)))] if gets else float("nan")
            return (statistics.median(latencies) if latencies else float("nan"), p99,
                    len(gets), len(latencies))

        self.wait_settled(15)
        measure(1.0, 2)  # warm up
        replan0, p99_0, n0, r0 = measure()
        print("  unloaded: Replan median %.1f ms (%d), GetLayout p99 %.2f ms (%d calls)" % (
            replan0 * 1000, r0, p99_0 * 1000, n0), flush=True)
        layers, experts, gpus, nodes = flood_shape()
        stats_file = os.path.join(self.c.dir, "flood.stats")
        child = subprocess.Popen(
            [sys.executable, script, "--flood_child", "--gen_dir", gen_dir,
             "--target", self.c.planner_target, "--certs", self.c.certs,
             "--threads", str(flood_threads), "--stats_file", stats_file],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.c.dir, "flood.log"), "w"))
        try:
            # Wait until plans are running.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not os.path.exists(stats_file + ".started"):
                time.sleep(0.05)
            time.sleep(0.5)
            replan1, p99_1, n1, r1 = measure()
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        flood = {}
        if os.path.exists(stats_file):
            for line in open(stats_file):
                k, v = line.strip().split("=", 1)
                flood[k] = v
        print("  flooded (%d threads, %s x %s on %s GPUs): Replan median %.1f ms (%d), "
              "GetLayout p99 %.2f ms (%d calls); plans: %s" % (
                  flood_threads, layers, experts, gpus, replan1 * 1000, r1, p99_1 * 1000, n1,
                  ", ".join("%s=%s" % kv for kv in sorted(flood.items()))), flush=True)
        self.flood = {"replan0": replan0, "replan1": replan1, "p99_0": p99_0, "p99_1": p99_1,
                      "plans": flood}
        plans_ok = int(flood.get("ok", "0"))
        self.record("Plan flood: max-work plans completed", ">= 1 OK plan", set(),
                    Outcome("OK" if plans_ok else "NONE", ", ".join(
                        "%s=%s" % kv for kv in sorted(flood.items()))), ok=plans_ok > 0)
        bad = {k: v for k, v in flood.items()
               if k not in ("ok", "RESOURCE_EXHAUSTED", "seconds", "threads")}
        self.record("Plan flood: only OK or RESOURCE_EXHAUSTED answers", "no other codes", set(),
                    Outcome("OK" if not bad else "OTHER", str(bad)), ok=not bad)
        self.record("Replan during the flood", "answers", set(),
                    Outcome("OK" if r1 else "NONE", "%d replans" % r1), ok=r1 > 0)


def flood_shape():
    """The largest dry run limits.max_plan_work allows: 64 GPUs on 8 nodes
    (8 candidate replica counts: 0, 1, 2, 4, ..., 64), 8 layers, experts
    filling the rest of the budget."""
    gpus, nodes, layers = 64, 8, 8
    candidates = 2 + gpus.bit_length() - 1  # 0, 1, 2, 4, ..., gpus
    experts = MAX_PLAN_WORK // (layers * gpus * candidates)
    return layers, experts, gpus, nodes


def flood_child(args):
    global pb
    pb = Protos(args.gen_dir)
    who = Identity("reader1", os.path.join(args.certs, "reader1.pem"),
                   os.path.join(args.certs, "reader1.key"), os.path.join(args.certs, "ca.pem"))
    ch = open_channel(args.target, who)
    layers, experts, gpus, nodes = flood_shape()
    rng = random.Random(SEED)
    r = pb.placement.PlanRequest(num_gpus=gpus, num_nodes=nodes)
    for _ in range(layers):
        r.layers.add().counts.extend(int(1000 * rng.paretovariate(1.2)) for _ in range(experts))
    data = r.SerializeToString()
    counts = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start = time.monotonic()

    def loop():
        while not stop.is_set():
            out = unary(ch, PLACEMENT["Plan"], data, timeout=60)
            with lock:
                counts["ok" if out.code == "OK" else out.code] += 1
            if out.code == "RESOURCE_EXHAUSTED":
                time.sleep(0.005)  # the limit said no: ask again at once, nearly

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    open(args.stats_file + ".started", "w").close()
    while not stop.is_set():
        stop.wait(0.2)
    with open(args.stats_file, "w") as f:
        for k, v in sorted(counts.items()):
            f.write("%s=%d\n" % (k, v))
        f.write("threads=%d\nseconds=%.1f\n" % (args.threads, time.monotonic() - start))
    os._exit(0)  # in-flight plans are abandoned


# --------------------------------------------------------------------------
# The table


def print_table(runner, flood_target=1.2):
    rows = []
    tot = collections.Counter()
    for g, st in runner.group_stats.items():
        ps = [p for p in runner.probes if p.group == g]
        row = {"tried": len(ps), "refused": sum(p.clear for p in ps),
               "unexpected": sum(not p.ok for p in ps), "crashes": len(st["crashes"])}
        rows.append((g, row, st))
        for k in row:
            tot[k] += row[k]
    stats = list(runner.group_stats.values())
    first = stats[0]["rss_before"] if stats else float("nan")
    last = stats[-1]["rss_after"] if stats else float("nan")
    print()
    print("%-10s %7s %10s %11s %14s %22s %8s" % (
        "group", "probes", "refused*", "unexpected", "crashes/hangs", "planner RSS MB",
        "seconds"))
    for g, r, st in rows:
        print("%-10s %7d %10d %11d %14d %9.1f -> %6.1f %+5.0f %7.1f" % (
            g, r["tried"], r["refused"], r["unexpected"], r["crashes"], st["rss_before"],
            st["rss_after"], st["rss_after"] - st["rss_before"], st["seconds"]))
    print("%-10s %7d %10d %11d %14d %9.1f -> %6.1f %+5.0f" % (
        "total", tot["tried"], tot["refused"], tot["unexpected"], tot["crashes"], first, last,
        last - first))
    print("* refused with a clear error: a gRPC status other than OK/UNKNOWN with a message, "
          "or a refused TLS handshake")
    print()
    print("committed state lost: %s (target 0): %s" % (
        "not checked" if runner.state_lost is None else runner.state_lost,
        getattr(runner, "final_text", "")))
    if hasattr(runner, "poison_rates"):
        b, p, a = runner.poison_rates
        print("windows ingested/s while node0 sends bad-clock windows: %.1f (before %.1f, "
              "after %.1f; node1 alone is half)" % (p, b, a))
    flood_ok = True
    if getattr(runner, "flood", None):
        f = runner.flood
        rr = f["replan1"] / f["replan0"] if f["replan0"] else float("nan")
        gr = f["p99_1"] / f["p99_0"] if f["p99_0"] else float("nan")
        flood_ok = rr <= flood_target and gr <= flood_target
        print("Plan flood (%s max-work plans in flight): Replan latency %.2f -> %.2f ms (x%.2f), "
              "GetLayout p99 %.2f -> %.2f ms (x%.2f); target x%.2f: %s" % (
                  f["plans"].get("threads", "?"), f["replan0"] * 1000, f["replan1"] * 1000, rr,
                  f["p99_0"] * 1000, f["p99_1"] * 1000, gr, flood_target,
                  "met" if flood_ok else "MISSED"))
    for note in runner.notes:
        print("note: " + note)
    unexpected = [p for p in runner.probes if not p.ok]
    if unexpected:
        print()
        print("unexpected outcomes:")
        for p in unexpected:
            print("  [%s] %s: expected %s, got %s%s" % (p.group, p.name, p.expect, p.outcome,
                                                        (" (" + p.note + ")") if p.note else ""))
    return tot, flood_ok


def main():
    global MAX_CONCURRENT_PLANS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin_dir", help="craft-planner, craft-agent, craft-worker")
    parser.add_argument("--repo", default=os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", "..")))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--verbose", action="store_true", help="print every probe")
    parser.add_argument("--strict_flood", action="store_true",
                        help="exit non-zero when the flood misses its 20%% target")
    parser.add_argument("--flood_threads", type=int, default=4)
    parser.add_argument("--max_concurrent_plans", type=int, default=MAX_CONCURRENT_PLANS,
                        help="the planner's limits.max_concurrent_plans")
    parser.add_argument("--groups", default="malformed,identity,bounds,flood",
                        help="comma-separated groups to run, in order")
    parser.add_argument("--flood_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gen_dir", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--stats_file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_child:
        return flood_child(args)
    if not args.bin_dir:
        parser.error("--bin_dir is required")

    MAX_CONCURRENT_PLANS = args.max_concurrent_plans
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="craft-probes-")
    gen_dir = os.path.join(work, "gen")
    os.makedirs(gen_dir)
    generate_protos(args.repo, gen_dir)
    cluster = Cluster(args.bin_dir, os.path.join(args.repo, "scripts", "make_certs.sh"), work)
    runner = None
    exit_code = 1
    try:
        cluster.start()
        runner = Runner(cluster, args.verbose)
        print("cluster up in %s (planner %s); waiting for both agents and load windows" % (
            work, cluster.planner_target), flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = runner.layout()
            if s is not None and s.windows_ingested >= 3 * NUM_GPUS and runner.settled():
                break
            time.sleep(0.2)
        # The cluster stays on the initial layout 0.0 until the identity
        # group's first forced apply: from 0.0 the plan moves experts across
        # nodes, which the Prepare-scoped fetch probes need.

        groups = {
            "malformed": runner.group_malformed,
            "identity": runner.group_identity,
            "bounds": runner.group_bounds,
            "flood": lambda: runner.group_flood(args.flood_threads, gen_dir,
                                                os.path.abspath(__file__)),
        }
        for name in args.groups.split(","):
            runner.run_group(name, groups[name])

        runner.run_group("final", lambda: runner.final_checks(args.bin_dir, args.verbose))
        tot, flood_ok = print_table(runner)
        print("run time %.0f s" % (time.monotonic() - started))
        failed = (tot["crashes"] or runner.state_lost != 0 or tot["unexpected"]
                  or (args.strict_flood and not flood_ok))
        print("RESULT: %s" % ("FAIL" if failed else "PASS"))
        exit_code = 1 if failed else 0
    except Exception:
        traceback.print_exc()
        print("RESULT: FAIL (harness error; logs in %s)" % work)
        args.keep = True
    finally:
        cluster.stop()
        if args.keep or exit_code != 0:
            print("logs: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
