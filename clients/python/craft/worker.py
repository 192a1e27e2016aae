"""EngineWorker: an inference engine's per-GPU process on NodeAgent.Attach.

One EngineWorker per GPU (global rank), next to the engine's own process for
that GPU. It opens the agent's Unix socket (`unix:/run/craft/agent.sock`; the
socket is protected by its file mode and the agent's SO_PEERCRED check, so the
channel is plain), sends the WorkerHello, the engine's load windows, and
answers the agent's Prepare / Commit / Abort by calling back into the engine
(an `Engine`), with the version rules of the C++ worker (gpu_worker/worker.h):

- Prepare V: READY (with bytes received and staging time) or FAILED{error}.
  V already serving, or already staged: READY again without staging (V serving
  with another layout than the one it flipped to: FAILED). A Prepare for
  another version than the one staging cancels that staging (latest wins, no
  answer for the cancelled one; Engine.drop is called for what it staged).
- Commit V: V staged -> Engine.flip(V) (at the engine's next step boundary),
  then FLIPPED; V already serving -> FLIPPED at once; anything else -> FAILED.
- Abort V: V staged or staging -> dropped, DROPPED; V prepared before but no
  longer staged (it failed, was cancelled or replaced) -> DROPPED; V serving
  or never prepared -> FAILED.
- Staging survives a reconnect, so a Commit on the next stream still applies.
- A Prepare with load_missing_from_checkpoint is the agent bringing this GPU to
  the node's committed version: from its arrival until the flip, windows are
  not reported (`holding` is True) and the engine should not serve with its
  old layout (every other rank routes with the new one).

Commands run one at a time, in arrival order, on one control thread (never on
gRPC's threads), so Engine callbacks never run concurrently with each other.
The stream is reopened with jittered exponential backoff whenever it ends (the
agent restarted, refused the hello, e.g. UNAVAILABLE before it knows the
model shape, or is not up yet); every stream starts with a fresh hello naming
the version served at that moment. While no stream is open, windows queue (the
oldest dropped beyond `max_queued_windows`) and answers are dropped: they
answer commands of a stream that is gone.

    class MyEngine(craft.Engine):
        def current_version(self): ...
        def stage(self, prepare, cancelled): ...   # -> StageResult, raise to fail
        def flip(self, version): ...               # return once routing uses it
        def drop(self, version): ...

    worker = craft.EngineWorker(MyEngine(), "unix:/run/craft/agent.sock", gpu=3,
                                model=dict(num_layers=58, num_experts=256, top_k=8,
                                           bytes_per_expert=88080384),
                                transfer_endpoint="10.0.0.5:7100")
    worker.start()
    ...
    worker.report_window(window_id, counts, version)  # counts[layer][local slot]
"""

import abc
import collections
import dataclasses
import logging
import random
import threading
import time

import grpc

from craft import _stubs

_stubs.load()
from craft.v1 import layout_pb2, load_pb2, worker_pb2, worker_pb2_grpc  # noqa: E402

log = logging.getLogger("craft.worker")

ATTACHED_METADATA_KEY = "craft-attached-gpu"
MAX_QUEUED_COMMANDS = 64
REMEMBERED_VERSIONS = 64


@dataclasses.dataclass
class StageResult:
    """What a staging did: bytes that came from peers, its time (0: measured for you)."""

    bytes_received: int = 0
    staging_ms: int = 0


class StagingCancelled(Exception):
    """Raise from Engine.stage when `cancelled` was set (no answer is sent)."""


class Engine(abc.ABC):
    """The engine's side of the callbacks. Called on the worker's control thread, one at a
    time; none may block forever (stage should watch `cancelled`)."""

    @abc.abstractmethod
    def current_version(self):
        """The layout version the engine routes with now ("0.0": the initial layout)."""

    @abc.abstractmethod
    def stage(self, prepare, cancelled):
        """Stage `prepare.layout.version` for this GPU: fill spare buffers with the experts of
        this GPU's slots of `prepare.layout` (keep or copy what it holds, fetch the
        `prepare.transfers` whose dst_gpu is this GPU; with load_missing_from_checkpoint, load
        the rest from the checkpoint), verify each expert's checksum, and return a StageResult
        (or None). Raise to answer FAILED (the exception's text is the error). `cancelled` (a
        threading.Event) is set when a newer Prepare or an Abort supersedes this one: return
        or raise promptly; the worker then calls drop(version)."""

    @abc.abstractmethod
    def flip(self, version):
        """Route with the staged `version` from the next step boundary, free the old buffers,
        and return once it does. Raise if that is impossible (answered FAILED)."""

    @abc.abstractmethod
    def drop(self, version):
        """Discard the staging of `version` (aborted, cancelled or replaced)."""


def window_id_at(unix_ms, window_ms):
    """Window ids are aligned to wall time: floor(unix_ms / window_ms)."""
    return int(unix_ms) // int(window_ms)


@dataclasses.dataclass
class WorkerStats:
    attached: bool = False
    attaches: int = 0
    windows_reported: int = 0
    windows_dropped: int = 0  # oldest dropped while no stream was open
    windows_held: int = 0  # not reported: holding for a resync
    prepares_ready: int = 0
    prepares_failed: int = 0
    bytes_received: int = 0  # by finished stagings (StageResult.bytes_received)
    flips: int = 0
    drops: int = 0
    last_error: str = ""  # how the last stream ended


@dataclasses.dataclass
class _Staged:
    version: str
    layout: object
    result: StageResult


class EngineWorker:
    """The engine side of NodeAgent.Attach for one GPU. Thread-safe."""

    def __init__(self, engine, agent, gpu, *, model, transfer_endpoint="", memory_bytes=0,
                 transfer_group_id=b"", staging_headroom_bytes=None, window_ms=1000,
                 min_backoff_s=0.1, max_backoff_s=5.0, healthy_after_s=10.0,
                 max_queued_windows=64):
        if not isinstance(engine, Engine):
            raise TypeError("engine must implement craft.Engine")
        if not agent.startswith("unix:"):
            agent = "unix:" + agent
        if transfer_group_id and len(transfer_group_id) != 128:
            raise ValueError("transfer_group_id must be empty or 128 bytes")
        self.engine = engine
        self.target = agent
        self.gpu = int(gpu)
        self.model = (model if isinstance(model, layout_pb2.ModelShape)
                      else layout_pb2.ModelShape(**model))
        self.window_ms = int(window_ms)
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self._healthy_after = healthy_after_s
        self._max_queued_windows = max_queued_windows

        self._mu = threading.Lock()
        self._cv = threading.Condition(self._mu)
        self._hello_fields = dict(memory_bytes=memory_bytes, transfer_endpoint=transfer_endpoint,
                                  transfer_group_id=transfer_group_id,
                                  staging_headroom_bytes=staging_headroom_bytes)
        self._stopping = False
        self._stop_event = threading.Event()
        self._out = None  # the open stream's send queue (a deque) or None
        self._pending_windows = collections.deque()
        self._call = None
        self._commands = collections.deque()
        self._staging = ""  # version being staged
        self._cancel = threading.Event()  # for the current staging
        self._staged = None  # _Staged
        self._serving_layout = None  # the layout flipped to, when this worker flipped
        self._prepared = collections.deque()  # versions prepared, most recent last
        self._held_for = ""
        self._stats = WorkerStats()
        self._threads = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        """Starts the control thread and the connection thread."""
        for name, target in (("control", self._control_loop), ("link", self._link_loop)):
            t = threading.Thread(target=target, name="craft-%s-%d" % (name, self.gpu), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        """Ends the stream and the threads; a staging in progress is cancelled. Idempotent."""
        with self._cv:
            self._stopping = True
            self._cancel.set()
            call = self._call
            self._cv.notify_all()
        self._stop_event.set()
        if call is not None:
            call.cancel()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- what the engine calls -------------------------------------------------------------

    @property
    def attached(self):
        with self._mu:
            return self._stats.attached

    def wait_attached(self, timeout):
        """True once a stream is open and the agent accepted the hello."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._stats.attached:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping:
                    return False
                self._cv.wait(left)
            return True

    @property
    def holding(self):
        """True while the agent is bringing this GPU to the node's committed version: the
        engine should not serve with its current layout, and windows are not reported."""
        with self._mu:
            return bool(self._held_for)

    def stats(self):
        with self._mu:
            return dataclasses.replace(self._stats)

    def window_id(self, unix_ms=None):
        """The id of the window holding `unix_ms` (default: now)."""
        return window_id_at(time.time() * 1000 if unix_ms is None else unix_ms, self.window_ms)

    def report_window(self, window_id, counts, version=None):
        """Reports one window: `counts[layer][i]` tokens routed to this GPU's i-th slot of
        `version`'s layer (default: the engine's current version). One call per window id."""
        version = self.engine.current_version() if version is None else version
        window = load_pb2.GpuWindow(gpu=self.gpu, layout_version=version, window_id=window_id,
                                    start_unix_ms=window_id * self.window_ms,
                                    duration_ms=self.window_ms)
        for layer in counts:
            window.layers.add(counts=[int(c) for c in layer])
        if len(window.layers) != self.model.num_layers:
            raise ValueError("window has %d layers, the model %d"
                             % (len(window.layers), self.model.num_layers))
        with self._cv:
            if self._held_for:
                self._stats.windows_held += 1
                return
            message = worker_pb2.WorkerMessage(window=window)
            if self._out is not None:
                self._out.append(message)
                self._stats.windows_reported += 1
                self._cv.notify_all()
            else:
                self._pending_windows.append(message)
                self._stats.windows_reported += 1
                while len(self._pending_windows) > self._max_queued_windows:
                    self._pending_windows.popleft()
                    self._stats.windows_dropped += 1

    def announce(self, **changes):
        """Updates hello fields (memory_bytes, transfer_endpoint, transfer_group_id,
        staging_headroom_bytes) and sends a fresh hello on the open stream."""
        unknown = set(changes) - set(self._hello_fields)
        if unknown:
            raise TypeError("unknown hello fields: %s" % ", ".join(sorted(unknown)))
        with self._cv:
            self._hello_fields.update(changes)
        self._send(worker_pb2.WorkerMessage(hello=self._hello()))

    # --- the stream ------------------------------------------------------------------------

    def _hello(self):
        with self._mu:
            fields = dict(self._hello_fields)
        headroom = fields.pop("staging_headroom_bytes")
        hello = worker_pb2.WorkerHello(gpu=self.gpu, model=self.model,
                                       committed_version=self.engine.current_version(), **fields)
        if headroom is not None:
            hello.staging_headroom_bytes = headroom
        return hello

    def _send(self, message):
        """Queues a message on the open stream; dropped when none is open."""
        with self._cv:
            if self._out is None:
                return False
            self._out.append(message)
            self._cv.notify_all()
            return True

    def _requests(self, out):
        while True:
            with self._cv:
                while not out and self._out is out and not self._stopping:
                    self._cv.wait()
                if not out:
                    return
                message = out.popleft()
            yield message

    def _link_loop(self):
        backoff = self._min_backoff
        while not self._stop_event.is_set():
            opened = time.monotonic()
            self._stream_once()
            if self._stop_event.is_set():
                return
            if time.monotonic() - opened >= self._healthy_after:
                backoff = self._min_backoff
            # Jitter in [0.5, 1.5) x backoff keeps restarted workers apart.
            self._stop_event.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)

    def _stream_once(self):
        # A fresh channel per stream: no reconnect backoff inherited from the last.
        channel = grpc.insecure_channel(self.target)
        out = collections.deque([worker_pb2.WorkerMessage(hello=self._hello())])
        with self._cv:
            if self._stopping:
                channel.close()
                return
            out.extend(self._pending_windows)
            self._pending_windows.clear()
            self._out = out
            call = worker_pb2_grpc.NodeAgentStub(channel).Attach(self._requests(out))
            self._call = call
        try:
            metadata = dict(call.initial_metadata() or ())
            if ATTACHED_METADATA_KEY in metadata:
                with self._cv:
                    self._stats.attached = True
                    self._stats.attaches += 1
                    self._cv.notify_all()
                log.info("gpu %d attached to %s", self.gpu, self.target)
            for command in call:
                self._handle_command(command)
            error = "the agent ended the stream"
        except grpc.RpcError as e:
            error = "%s: %s" % (e.code().name if e.code() else "UNKNOWN", e.details())
        with self._cv:
            self._out = None
            self._call = None
            self._stats.attached = False
            self._stats.last_error = error
            # Windows not sent yet go to the next stream; answers are dropped.
            for message in out:
                if message.HasField("window"):
                    self._pending_windows.append(message)
            out.clear()
            while len(self._pending_windows) > self._max_queued_windows:
                self._pending_windows.popleft()
                self._stats.windows_dropped += 1
            self._cv.notify_all()
        if not self._stop_event.is_set():
            log.warning("gpu %d: stream to %s ended (%s); reconnecting", self.gpu, self.target,
                        error)
        call.cancel()
        channel.close()

    # --- commands --------------------------------------------------------------------------

    def _handle_command(self, command):
        """On the stream's thread: queue the command; never blocks on the engine."""
        kind = command.WhichOneof("body")
        serving = self.engine.current_version()  # not under our lock: the engine may hold its own
        with self._cv:
            if self._stopping:
                return
            if kind == "prepare":
                version = command.prepare.layout.version
            elif kind == "abort":
                version = command.abort.version
            else:
                version = ""
            supersedes = kind == "prepare" and version != self._staging
            aborts = kind == "abort" and version == self._staging
            if (kind == "prepare" and command.prepare.load_missing_from_checkpoint
                    and version != serving and not self._held_for):
                self._held_for = version
                log.warning("gpu %d: the node committed %s: not serving until it is loaded and "
                            "flipped", self.gpu, version)
            if self._staging and (supersedes or aborts):
                self._cancel.set()
            if len(self._commands) >= MAX_QUEUED_COMMANDS:
                log.error("gpu %d: command queue full: dropping the oldest command", self.gpu)
                self._commands.popleft()
            self._commands.append(command)
            self._cv.notify_all()

    def _control_loop(self):
        while True:
            with self._cv:
                while not self._commands and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                command = self._commands.popleft()
            kind = command.WhichOneof("body")
            try:
                if kind == "prepare":
                    self._prepare(command.prepare)
                elif kind == "commit":
                    self._commit(command.commit.version)
                elif kind == "abort":
                    self._abort(command.abort.version)
                else:
                    log.warning("gpu %d: ignoring an empty command", self.gpu)
            except Exception:  # an engine bug must not kill the control thread
                log.exception("gpu %d: %s failed", self.gpu, kind)

    def _report(self, version, state, error="", result=None):
        status = worker_pb2.WorkerStatus(version=version, state=state, error=error)
        if result is not None:
            status.bytes_received = result.bytes_received
            status.staging_ms = result.staging_ms
        self._send(worker_pb2.WorkerMessage(status=status))

    def _remember(self, version):
        if version not in self._prepared:
            self._prepared.append(version)
            if len(self._prepared) > REMEMBERED_VERSIONS:
                self._prepared.popleft()

    def _prepare(self, prepare):
        version = prepare.layout.version
        serving = self.engine.current_version()
        replaced = None
        with self._cv:
            if self._stopping:
                return
            if not version:
                answer = (worker_pb2.FAILED, "prepare without a layout version", None)
            else:
                self._remember(version)
                answer = None
                if version == serving:
                    if (self._serving_layout is not None
                            and self._serving_layout.version == version
                            and self._serving_layout != prepare.layout):
                        answer = (worker_pb2.FAILED,
                                  "version %s is serving with another layout" % version, None)
                    else:
                        answer = (worker_pb2.READY, "", StageResult())
                elif self._staged is not None and self._staged.version == version:
                    answer = (worker_pb2.READY, "", self._staged.result)
                else:
                    if self._staged is not None:
                        log.info("gpu %d: prepare %s replaces staged %s", self.gpu, version,
                                 self._staged.version)
                        replaced = self._staged.version
                        self._staged = None
                    self._staging = version
                    self._cancel = threading.Event()
                    cancel = self._cancel
            if answer is not None and answer[0] == worker_pb2.FAILED:
                self._stats.prepares_failed += 1
        if replaced is not None:
            self._drop(replaced)
        if answer is not None:
            self._report(version, answer[0], answer[1], answer[2])
            return

        start = time.monotonic()
        error = None
        try:
            result = self.engine.stage(prepare, cancel) or StageResult()
            if not result.staging_ms:
                result = dataclasses.replace(
                    result, staging_ms=int((time.monotonic() - start) * 1000))
        except StagingCancelled:
            result = None
        except Exception as e:  # the engine's failure is the answer
            result = None
            error = str(e) or type(e).__name__
        with self._cv:
            self._staging = ""
            cancelled = cancel.is_set() or self._stopping
            if result is not None and not cancelled:
                self._staged = _Staged(version, layout_pb2.Layout(), result)
                self._staged.layout.CopyFrom(prepare.layout)
                self._stats.prepares_ready += 1
                self._stats.bytes_received += result.bytes_received
            elif not cancelled:
                self._stats.prepares_failed += 1
        if cancelled:  # an Abort answers DROPPED; a newer Prepare supersedes
            log.info("gpu %d: staging of %s cancelled", self.gpu, version)
            self._drop(version)
        elif result is None:
            log.warning("gpu %d: prepare %s failed: %s", self.gpu, version, error)
            self._drop(version)
            self._report(version, worker_pb2.FAILED, error or "staging failed")
        else:
            self._report(version, worker_pb2.READY, "", result)

    def _drop(self, version):
        try:
            self.engine.drop(version)
        except Exception:
            log.exception("gpu %d: drop %s failed", self.gpu, version)

    def _commit(self, version):
        serving = self.engine.current_version()
        with self._cv:
            staged = self._staged
        if version == serving:
            self._report(version, worker_pb2.FLIPPED)
            return
        if staged is None or staged.version != version:
            self._report(version, worker_pb2.FAILED,
                         "cannot commit version %s: it is not staged (serving %s, staged %s)"
                         % (version, serving, staged.version if staged else "none"))
            return
        try:
            self.engine.flip(version)
        except Exception as e:
            log.error("gpu %d: flip to %s failed: %s", self.gpu, version, e)
            self._report(version, worker_pb2.FAILED, "flip failed: %s" % (str(e) or type(e).__name__))
            return
        with self._cv:
            self._serving_layout = staged.layout
            self._staged = None
            self._stats.flips += 1
            if self._held_for:
                log.info("gpu %d: serving again, on %s", self.gpu, version)
                self._held_for = ""
        self._report(version, worker_pb2.FLIPPED)

    def _abort(self, version):
        serving = self.engine.current_version()
        error = ""
        dropped = False
        with self._cv:
            if self._staged is not None and self._staged.version == version:
                self._staged = None
                self._stats.drops += 1
                dropped = True
            elif version == serving:
                error = "cannot abort version %s: it is serving" % version
            elif version not in self._prepared:
                error = "cannot abort version %s: unknown version" % version
        if dropped:
            self._drop(version)
        if error:
            self._report(version, worker_pb2.FAILED, error)
        else:
            self._report(version, worker_pb2.DROPPED)
