"""PlacementClient: what operators and tools ask the planner (PlacementService).

Same transport and auth as craftctl: mutual TLS with a client certificate
(--tls_cert/--tls_key/--tls_ca; the planner's certificate must name
`server_name`), or `insecure=True` against a demo planner; an optional bearer
token read from a file ("authorization: Bearer <token>") grants the admin role
where the planner has `security.admin_token_file`.

    client = PlacementClient("planner:50051", tls_cert="ops.pem", tls_key="ops.key",
                             tls_ca="ca.pem")
    status = client.layout()           # LayoutStatus
    for status in client.watch():      # the current layout, then every commit
        ...
    client.replan(force=True)          # admin

Every failed call raises CraftError (gRPC code and message).
"""

import random
import threading
import time

import grpc
from google.protobuf import json_format

from craft import _stubs
from craft.errors import CraftError

_stubs.load()
from craft.v1 import placement_pb2, placement_pb2_grpc  # noqa: E402

MAX_TOKEN_BYTES = 4096

# Reconnect quickly after a planner restart (gRPC's defaults back off to 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 << 20),
    # A channel of its own: a new channel must not share a subchannel stuck on
    # a planner that went away (see PlacementClient._reset).
    ("grpc.use_local_subchannel_pool", 1),
]


def read_token_file(path):
    """The token in `path` without surrounding whitespace (common/token_file.h rules)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 2)
    except OSError as e:
        raise ValueError("token file %s: %s" % (path, e.strerror)) from None
    token = raw.strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise ValueError("token file %s: must hold 1 to %d characters" % (path, MAX_TOKEN_BYTES))
    if any(b <= 0x20 or b >= 0x7F for b in token):
        raise ValueError("token file %s: the token must be printable, without spaces" % path)
    return token.decode("ascii")


def _read(path, flag):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError("%s %s: %s" % (flag, path, e.strerror)) from None


def make_channel(target, *, tls_cert=None, tls_key=None, tls_ca=None,
                 server_name="craft-planner", insecure=False, options=()):
    """A channel to `target` with craftctl's transport rules."""
    options = list(_CHANNEL_OPTIONS) + list(options)
    if insecure:
        if tls_cert or tls_key or tls_ca:
            raise ValueError("insecure=True and TLS files given: choose one")
        return grpc.insecure_channel(target, options=options)
    missing = [n for n, v in (("tls_cert", tls_cert), ("tls_key", tls_key), ("tls_ca", tls_ca))
               if not v]
    if missing:
        raise ValueError("mutual TLS needs tls_cert, tls_key and tls_ca (missing: %s), "
                         "or insecure=True" % ", ".join(missing))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca, "tls_ca"),
        private_key=_read(tls_key, "tls_key"),
        certificate_chain=_read(tls_cert, "tls_cert"),
    )
    options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, credentials, options=options)


class PlacementClient:
    """A client of the planner's PlacementService. Thread-safe; close() when done.
    `group`: the placement group asked about, as the planner's config names it; "" means the
    planner's only group."""

    def __init__(self, target, *, tls_cert=None, tls_key=None, tls_ca=None,
                 server_name="craft-planner", insecure=False, token_file=None, timeout_s=5,
                 group=""):
        self.target = target
        self.timeout_s = timeout_s
        self.group = group
        self._metadata = ()
        if token_file:
            self._metadata = (("authorization", "Bearer " + read_token_file(token_file)),)
        self._make_channel = lambda: make_channel(
            target, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, server_name=server_name,
            insecure=insecure)
        self._lock = threading.Lock()
        self._channel = self._make_channel()
        self._stub = placement_pb2_grpc.PlacementServiceStub(self._channel)
        self._closed = threading.Event()

    def close(self):
        self._closed.set()
        with self._lock:
            self._channel.close()

    def _reset(self, stub):
        """After UNAVAILABLE: a fresh channel. A planner that went away may leave the old one
        connecting to a socket that never completes a handshake until gRPC's connect timeout
        (20 s); reconnecting from scratch reaches a restarted planner at once."""
        with self._lock:
            if self._stub is not stub or self._closed.is_set():
                return  # another thread reset it already
            old = self._channel
            self._channel = self._make_channel()
            self._stub = placement_pb2_grpc.PlacementServiceStub(self._channel)
        old.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Unary calls. Reads are retried on UNAVAILABLE until the timeout (the
    # planner restarting); Replan is not retried: it may have started.
    def _call(self, method, request, *, retry):
        deadline = time.monotonic() + self.timeout_s
        backoff = 0.05
        while True:
            left = deadline - time.monotonic()
            stub = self._stub
            try:
                return getattr(stub, method)(
                    request, timeout=max(left, 0.001), metadata=self._metadata)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._reset(stub)
                if not (retry and e.code() == grpc.StatusCode.UNAVAILABLE
                        and time.monotonic() + backoff < deadline and not self._closed.is_set()):
                    raise CraftError.from_rpc_error(method, e) from None
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def layout(self):
        """LayoutStatus: the committed layout, pending version, epoch, measured balancedness."""
        return self._call("GetLayout", placement_pb2.GetLayoutRequest(group=self.group), retry=True)

    def agents(self):
        """[AgentInfo]: every node the planner knows."""
        return list(self._call("ListAgents", placement_pb2.ListAgentsRequest(group=self.group),
                               retry=True).agents)

    def explain(self):
        """ExplainResponse: the last replan's per-layer benefit curves and decision."""
        return self._call("Explain", placement_pb2.ExplainRequest(group=self.group), retry=True)

    def plan(self, request):
        """Dry run. `request`: a PlanRequest, or a dict in its JSON form, e.g.
        {"layers": [{"counts": [...]}, ...], "algorithm": "craft", "budget": 4}."""
        if isinstance(request, dict):
            try:
                request = json_format.ParseDict(request, placement_pb2.PlanRequest())
            except json_format.ParseError as e:
                raise ValueError("bad PlanRequest: %s" % e) from None
        elif not isinstance(request, placement_pb2.PlanRequest):
            raise TypeError("plan() takes a PlanRequest or a dict, not %s" % type(request).__name__)
        if not request.group:
            request.group = self.group
        return self._call("Plan", request, retry=True)

    def replan(self, force=False):
        """ReplanResponse (admin: an admin certificate, or the token)."""
        return self._call("Replan", placement_pb2.ReplanRequest(force=force, group=self.group),
                          retry=False)

    def watch(self, known_version="", *, reconnect=True, min_backoff_s=0.1, max_backoff_s=5.0):
        """Yields LayoutStatus: the current layout (unless it is `known_version`), then every
        commit. With reconnect (default) a stream that ends is reopened with backoff, from the
        last version seen, so a planner restart is invisible but for the wait; without it, or
        on any other error than UNAVAILABLE / a clean end, raises CraftError. Ends when the
        client is closed."""
        backoff = min_backoff_s
        while not self._closed.is_set():
            stub = self._stub
            call = stub.WatchLayout(
                placement_pb2.WatchLayoutRequest(known_version=known_version, group=self.group),
                metadata=self._metadata)
            try:
                for status in call:
                    backoff = min_backoff_s
                    known_version = status.committed.version
                    yield status
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if not reconnect or e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                                     grpc.StatusCode.CANCELLED):
                    raise CraftError.from_rpc_error("WatchLayout", e) from None
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._reset(stub)
            finally:
                call.cancel()
            if not reconnect:
                return
            self._closed.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, max_backoff_s)
