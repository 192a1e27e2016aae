"""A trivial in-memory engine for the tests: expert weights are bytes made by a
deterministic fill rule (as the C++ CPU worker's "checkpoint"), checked with
FNV-1a; staging copies kept experts, fetches transfers from the source GPU's
engine in this process (the peers of a real engine are other processes), and
loads from the "checkpoint" only when the agent asks it to. One step per
window: flips happen at window boundaries, like the reference worker's."""

import hashlib
import random
import threading
import time

import craft

_weights = {}
_weights_lock = threading.Lock()


def expert_bytes(layer, expert, size):
    key = (layer, expert, size)
    with _weights_lock:
        if key not in _weights:
            out = bytearray()
            block = hashlib.sha256(b"craft-test-weights:%d:%d" % (layer, expert)).digest()
            while len(out) < size:
                out += block
                block = hashlib.sha256(block).digest()
            data = bytes(out[:size])
            _weights[key] = (data, craft.fnv1a64(data))
        return _weights[key]


class Traffic:
    """Every GPU sees the same tokens of a window (data-parallel attention, global routing):
    a skewed top-k choice per token, seeded by the window id."""

    def __init__(self, num_layers, num_experts, top_k, tokens, skew):
        self.num_layers, self.num_experts, self.top_k, self.tokens = (
            num_layers, num_experts, top_k, tokens)
        self.weights = [[skew ** -((e + 3 * l) % num_experts) for e in range(num_experts)]
                        for l in range(num_layers)]
        self._cache = {}
        self._lock = threading.Lock()

    def window(self, window_id):
        with self._lock:
            if window_id not in self._cache:
                rng = random.Random(window_id)
                layers = []
                for l in range(self.num_layers):
                    tokens = []
                    for _ in range(self.tokens):
                        chosen = []
                        while len(chosen) < self.top_k:
                            e = rng.choices(range(self.num_experts), self.weights[l])[0]
                            if e not in chosen:
                                chosen.append(e)
                        tokens.append(chosen)
                    layers.append(tokens)
                self._cache = {window_id: layers}  # windows come in order
            return self._cache[window_id]


class InMemoryEngine(craft.Engine):
    def __init__(self, gpu, initial_layout, bytes_per_expert, peers, traffic, window_ms):
        self.gpu = gpu
        self.bytes_per_expert = bytes_per_expert
        self.peers = peers  # gpu -> InMemoryEngine
        self.traffic = traffic
        self.window_ms = window_ms
        self.worker = None
        self._lock = threading.Lock()
        self._version = initial_layout.version
        self._layout = initial_layout
        self._slots = self._load(initial_layout)
        self._staged = {}  # version -> (layout, slots)
        self._pending = None  # (version, threading.Event)
        self.staged_versions = []
        self._stop = threading.Event()
        self._thread = None

    def _load(self, layout):
        return [[expert_bytes(l, e, self.bytes_per_expert)[0] for e in experts]
                for l, experts in enumerate(craft.gpu_experts(layout, self.gpu))]

    # --- craft.Engine ---------------------------------------------------------------

    def current_version(self):
        with self._lock:
            return self._version

    def stage(self, prepare, cancelled):
        new = prepare.layout
        incoming = {(t.layer, t.dst_slot): t for t in prepare.transfers if t.dst_gpu == self.gpu}
        with self._lock:
            held = {}
            for l, experts in enumerate(craft.gpu_experts(self._layout, self.gpu)):
                for i, e in enumerate(experts):
                    held[(l, e)] = self._slots[l][i]
        received = 0
        slots = []
        for l, layer in enumerate(new.layers):
            first, count = craft.gpu_slots(layer, self.gpu)
            row = []
            for slot in range(first, first + count):
                if cancelled.is_set():
                    raise craft.StagingCancelled()
                e = layer.phy2log[slot]
                t = incoming.get((l, slot))
                if t is not None:
                    if t.expert != e:
                        raise RuntimeError("transfer for layer %d slot %d names expert %d, the "
                                           "layout %d" % (l, slot, t.expert, e))
                    data = self.peers[t.src_gpu].fetch(t.src_version, l, t.src_slot, e)
                    received += len(data)
                elif (l, e) in held:
                    data = held[(l, e)]
                elif prepare.load_missing_from_checkpoint:
                    data = expert_bytes(l, e, self.bytes_per_expert)[0]
                else:
                    raise RuntimeError("layer %d slot %d: no source for expert %d" % (l, slot, e))
                if craft.fnv1a64(data) != expert_bytes(l, e, self.bytes_per_expert)[1]:
                    raise RuntimeError("layer %d slot %d: checksum mismatch" % (l, slot))
                row.append(data)
            slots.append(row)
        with self._lock:
            self._staged[new.version] = (new, slots)
            self.staged_versions.append(new.version)
        return craft.StageResult(bytes_received=received)

    def flip(self, version):
        done = threading.Event()
        with self._lock:
            if version not in self._staged:
                raise RuntimeError("%s is not staged" % version)
            self._pending = (version, done)
        if not done.wait(10):
            raise RuntimeError("no step boundary within 10 s")

    def drop(self, version):
        with self._lock:
            self._staged.pop(version, None)

    # --- a peer's fetch ---------------------------------------------------------------

    def fetch(self, version, layer, slot, expert):
        with self._lock:
            if version != self._version:
                raise RuntimeError("gpu %d does not serve %s" % (self.gpu, version))
            first, count = craft.gpu_slots(self._layout.layers[layer], self.gpu)
            if not first <= slot < first + count:
                raise RuntimeError("gpu %d has no slot %d" % (self.gpu, slot))
            if self._layout.layers[layer].phy2log[slot] != expert:
                raise RuntimeError("slot %d does not hold expert %d" % (slot, expert))
            return self._slots[layer][slot - first]

    # --- the step loop ------------------------------------------------------------------

    def start(self, worker):
        self.worker = worker
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _loop(self):
        window_id = craft.window_id_at(time.time() * 1000, self.window_ms) + 1
        while not self._stop.wait(max(0, window_id * self.window_ms / 1000 - time.time())):
            with self._lock:  # the step boundary: a committed version takes effect here
                version, layout = self._version, self._layout
                if self._pending is not None:
                    new_version, done = self._pending
                    self._layout, self._slots = self._staged.pop(new_version)
                    self._version = new_version
                    self._pending = None
                    done.set()
            if window_id > 0:
                self.worker.report_window(window_id - 1, self._count(window_id - 1, layout),
                                          version)
            window_id += 1

    def _count(self, window_id, layout):
        counts = []
        for l, tokens in enumerate(self.traffic.window(window_id)):
            layer = layout.layers[l]
            first, count = craft.gpu_slots(layer, self.gpu)
            replicas = {}
            for slot, e in enumerate(layer.phy2log):
                replicas.setdefault(e, []).append(slot)
            row = [0] * count
            for t, experts in enumerate(tokens):
                for e in experts:
                    slot = replicas[e][t % len(replicas[e])]
                    if first <= slot < first + count:
                        row[slot - first] += 1
            counts.append(row)
        return counts

    def verify(self):
        """Every slot holds its expert's bytes; returns (version, slots checked)."""
        with self._lock:
            checked = 0
            for l, experts in enumerate(craft.gpu_experts(self._layout, self.gpu)):
                for i, e in enumerate(experts):
                    want = expert_bytes(l, e, self.bytes_per_expert)[1]
                    if craft.fnv1a64(self._slots[l][i]) != want:
                        raise AssertionError("gpu %d layer %d slot %d: wrong bytes"
                                             % (self.gpu, l, i))
                    checked += 1
            return self._version, checked
