"""A PyTorch MoE engine on craft: the template an engine integration copies.

One process per GPU rank (here a CPU process; the ranks form a gloo process group). Each holds a
small stack of MoE layers: a router replicated on every rank and the expert weights of the slots
the serving layout gives its rank. It attaches to its node's craft-agent through
`craft.EngineWorker`, reports per-slot token counts as load windows, and applies new layouts with
the two-phase apply:

- `stage` (Prepare): keep the experts the rank already holds, receive the others from the ranks
  the Prepare's transfers name, with `torch.distributed` isend/irecv on a process group of its own,
  verify every staged expert against the checkpoint's checksum, and hold the result aside. The
  serving weights are not touched, so a failed or aborted apply changes nothing.
- `flip` (Commit): route with the staged layout from a step boundary that every rank agrees on, so
  no step routes with two tables.
- `drop` (Abort): forget the staging.

What an integration copies, and what it replaces:

- `MoEStack.forward`: how routing reads the layout. A token's expert becomes a slot by picking
  among the expert's replicas (`phy2log`), here round-robin on the token index; the rank counts the
  tokens of its own slots, in slot order, which is exactly what `EngineWorker.report_window` wants.
  Replication never changes the math: a replica holds the same weights, so the output does not
  depend on the layout (the test checks this).
- `TorchMoEEngine.stage`: the transfer pattern. The Prepare a node receives carries every transfer
  whose source or destination GPU is on that node, so each rank sends exactly what it is the
  source of and receives what it is the destination of; both ends derive the message tag from the
  version and the destination slot, so the exchange needs no extra coordination, and all sends and
  receives are posted before any is waited on, so no order of them can deadlock. An abort or a
  newer Prepare (`cancelled`) or the Prepare's deadline abandons the exchange; tags carry a salt of
  the version (`tag_salt`), so a message of an abandoned exchange never matches a later one.
- `TorchMoEEngine._agree`: the step boundary. Before every step the ranks exchange a few integers
  (the window id, a stop request, a probe request, the version each rank wants to serve), and all
  flip at the first step at which every rank has the commit. In a real engine this piggybacks on
  the step's existing metadata exchange.
- `Checkpoint`: stands for the model's files. Weights here are made from a (layer, expert) seed so
  that every process can check any slot; an engine reads its checkpoint and its recorded checksums.

What it leaves out: GPUs (move the tensors and use NCCL for the transfer group), dispatch with
all-to-all (every rank sees every token here: data-parallel attention ahead of the MoE, and the
combine is an all-reduce), and rejoining the process group after a rank restarts.
"""

import hashlib
import logging
import threading
import time
import zlib

import torch
import torch.distributed as dist
import torch.nn.functional as F

import craft

log = logging.getLogger("craft.torch_moe")


def tensor_checksum(tensor):
    """sha256 of a tensor's bytes: the checksum the checkpoint records for every expert."""
    return hashlib.sha256(tensor.detach().contiguous().numpy()).hexdigest()


def parse_version(version):
    """"<epoch>.<seq>" -> (epoch, seq), integers every rank can exchange in a tensor."""
    epoch, _, seq = version.partition(".")
    return int(epoch), int(seq)


def tag_salt(version):
    """11 bits of a version for its transfers' tags: 2048 consecutive versions of one epoch never
    share them, so an abandoned exchange's messages cannot match a later one's."""
    epoch, seq = parse_version(version)
    return (seq + 977 * epoch) % 2048


class Checkpoint:
    """The model's weights, made deterministically so that any process can check any expert.

    An expert is one tensor of shape (2, hidden, ffn): the up projection and the transposed down
    projection, so that one send moves it. The routers favour some experts (`skew`): the hot ones
    differ per layer and are spread over the initial layout's GPUs, as real traffic is."""

    def __init__(self, num_layers, num_experts, top_k, hidden=64, ffn=128, skew=0.45, seed=0):
        self.num_layers, self.num_experts, self.top_k = num_layers, num_experts, top_k
        self.hidden, self.ffn, self.skew, self.seed = hidden, ffn, skew, seed
        self._checksums = {}
        self._lock = threading.Lock()

    @property
    def expert_shape(self):
        return (2, self.hidden, self.ffn)

    @property
    def bytes_per_expert(self):
        return 2 * self.hidden * self.ffn * 4  # float32

    def _generator(self, *key):
        return torch.Generator().manual_seed(zlib.crc32(repr((self.seed,) + key).encode()))

    def expert(self, layer, expert):
        g = self._generator("expert", layer, expert)
        return torch.randn(self.expert_shape, generator=g) / self.hidden ** 0.5

    def checksum(self, layer, expert):
        with self._lock:
            key = (layer, expert)
            if key not in self._checksums:
                self._checksums[key] = tensor_checksum(self.expert(layer, expert))
            return self._checksums[key]

    def router(self, layer):
        """(gate (hidden, E), bias (E,)): the bias makes expert e's popularity fall with its
        rank (e * 5 + 3 * layer) mod E, so the hot experts of a layer sit on different GPUs."""
        g = self._generator("router", layer)
        gate = torch.randn(self.hidden, self.num_experts, generator=g) / self.hidden ** 0.5
        ranks = torch.tensor([(e * 5 + 3 * layer) % self.num_experts
                              for e in range(self.num_experts)], dtype=torch.float32)
        return gate, -self.skew * ranks

    def tokens(self, seed, count):
        """A batch of hidden states: the traffic of a window (seeded by its id) or a probe."""
        return torch.randn(count, self.hidden, generator=self._generator("tokens", seed))


class Placement:
    """One layout as one rank uses it: per layer, the replicas of every expert (for routing) and
    the weights of the rank's own slots, in slot order."""

    def __init__(self, layout, rank, weights):
        self.layout = layout
        self.version = layout.version
        self.weights = weights  # [layer][i]: the expert tensor of this rank's i-th slot
        self.first, self.replicas, self.num_replicas = [], [], []
        for layer in layout.layers:
            first, count = craft.gpu_slots(layer, rank)
            self.first.append(first)
            slots = {}
            for slot, e in enumerate(layer.phy2log):
                slots.setdefault(e, []).append(slot)
            if sorted(slots) != list(range(layout.num_experts)):
                raise ValueError("layout %s: a layer lacks an expert" % layout.version)
            width = max(len(s) for s in slots.values())
            table = torch.zeros(layout.num_experts, width, dtype=torch.long)
            for e, s in slots.items():
                table[e, : len(s)] = torch.tensor(s)
            self.replicas.append(table)
            self.num_replicas.append(torch.tensor([len(slots[e])
                                                   for e in range(layout.num_experts)]))

    def experts(self, layer):
        first = self.first[layer]
        phy2log = self.layout.layers[layer].phy2log
        return [phy2log[first + i] for i in range(len(self.weights[layer]))]

    def holding(self):
        """{(layer, expert): tensor} of every expert this rank holds."""
        out = {}
        for l in range(len(self.weights)):
            for e, w in zip(self.experts(l), self.weights[l]):
                out[(l, e)] = w
        return out


class MoEStack(torch.nn.Module):
    """The MoE layers of one rank. The routers are ordinary replicated weights; the experts are
    not parameters of the module but the serving Placement's tensors, because the set a rank holds
    changes with the layout."""

    def __init__(self, checkpoint, group=None):
        super().__init__()
        self.top_k = checkpoint.top_k
        self.group = group
        gates, biases = zip(*(checkpoint.router(l) for l in range(checkpoint.num_layers)))
        self.gates = torch.nn.ParameterList(torch.nn.Parameter(g, requires_grad=False)
                                            for g in gates)
        for l, b in enumerate(biases):
            self.register_buffer("bias%d" % l, b)

    @torch.no_grad()
    def forward(self, x, placement):
        """x: (tokens, hidden), the same on every rank. Returns (output, counts): counts[layer][i]
        is the number of token choices this rank's i-th slot served."""
        tokens = torch.arange(x.shape[0])
        counts = []
        for l, gate in enumerate(self.gates):
            logits = x @ gate + getattr(self, "bias%d" % l)
            top, experts = logits.topk(self.top_k, dim=-1)
            weights = torch.softmax(top, dim=-1)
            # Among an expert's replicas, round-robin on the token: every rank computes the same
            # choice, so each token choice is served exactly once.
            pick = tokens.unsqueeze(1) % placement.num_replicas[l][experts]
            slots = placement.replicas[l][experts, pick]
            out = torch.zeros_like(x)
            row = []
            for i, w in enumerate(placement.weights[l]):
                t, k = (slots == placement.first[l] + i).nonzero(as_tuple=True)
                row.append(int(t.numel()))
                if t.numel():
                    y = F.silu(x[t] @ w[0]) @ w[1].t()
                    out.index_add_(0, t, y * weights[t, k].unsqueeze(1))
            dist.all_reduce(out, group=self.group)  # the combine: every rank's share of each token
            x = x + out
            counts.append(row)
        return x, counts


class TorchMoEEngine(craft.Engine):
    """One rank: the craft.Engine callbacks (called on EngineWorker's control thread) and the step
    loop (`run`, on the rank's main thread)."""

    def __init__(self, rank, world_size, num_nodes, checkpoint, transfer_group, window_ms,
                 tokens_per_step=256, transfer_timeout_s=30.0):
        self.rank, self.world_size = rank, world_size
        self.checkpoint = checkpoint
        self.transfer_group = transfer_group
        self.window_ms = window_ms
        self.tokens_per_step = tokens_per_step
        self.transfer_timeout_s = transfer_timeout_s
        self.model = MoEStack(checkpoint)
        initial = craft.contiguous_layout(checkpoint.num_layers, checkpoint.num_experts,
                                          world_size, num_nodes)
        self._lock = threading.Lock()
        self._serving = Placement(initial, rank, self._load(initial))
        self._staged = {}  # version -> Placement
        self._pending = None  # (version, threading.Event): a commit waiting for a step boundary
        self._stop = False
        self._stopped = threading.Event()
        self._probes = 0  # probes requested; each runs at a step every rank agreed on
        self.bytes_received = 0
        self.abandoned_exchanges = 0  # exchanges given up (abort, deadline): their waits linger

    # --- the checkpoint ----------------------------------------------------------------------

    def _load(self, layout):
        """This rank's weights of `layout` from the checkpoint, as a starting rank loads them."""
        return [[self.checkpoint.expert(l, e) for e in experts]
                for l, experts in enumerate(craft.gpu_experts(layout, self.rank))]

    # --- craft.Engine ------------------------------------------------------------------------

    def current_version(self):
        with self._lock:
            return self._serving.version

    def stage(self, prepare, cancelled):
        new = prepare.layout
        version = new.version
        me = self.rank
        if (new.num_experts != self.checkpoint.num_experts
                or len(new.layers) != self.checkpoint.num_layers
                or new.num_gpus != self.world_size):
            raise RuntimeError("layout %s does not fit this model" % version)
        with self._lock:
            serving = self._serving
        held = serving.holding()
        shape = self.checkpoint.expert_shape
        salt = tag_salt(version)
        max_slots = max(len(layer.phy2log) for layer in new.layers)
        if len(new.layers) * max_slots >= 1 << 20:
            raise RuntimeError("too many slots for the transfer tags")

        def tag(layer, dst_slot):  # gloo tags are C ints: 11 bits of version, 20 of slot
            return (salt << 20) | (layer * max_slots + dst_slot)

        # Plan everything first: a failure before any message is posted leaves no peer waiting.
        sends, recvs = [], {}
        for t in prepare.transfers:
            if t.src_gpu == me:
                if t.src_version != serving.version:
                    raise RuntimeError("transfer of layer %d expert %d reads version %s; this rank "
                                       "serves %s" % (t.layer, t.expert, t.src_version,
                                                      serving.version))
                first = serving.first[t.layer]
                i = t.src_slot - first
                if not 0 <= i < len(serving.weights[t.layer]) or \
                        serving.experts(t.layer)[i] != t.expert:
                    raise RuntimeError("layer %d slot %d does not hold expert %d here"
                                       % (t.layer, t.src_slot, t.expert))
                if t.dst_gpu != me:
                    sends.append((t, serving.weights[t.layer][i]))
            if t.dst_gpu == me:
                recvs[(t.layer, t.dst_slot)] = t
        weights = []
        for l, layer in enumerate(new.layers):
            first, count = craft.gpu_slots(layer, me)
            row = []
            for slot in range(first, first + count):
                e = layer.phy2log[slot]
                t = recvs.get((l, slot))
                if t is not None and t.expert != e:
                    raise RuntimeError("transfer for layer %d slot %d names expert %d, the layout "
                                       "%d" % (l, slot, t.expert, e))
                if t is not None and t.src_gpu == me:
                    row.append(serving.weights[l][t.src_slot - serving.first[l]])
                elif t is not None:
                    row.append(None)  # filled by a receive
                elif (l, e) in held:
                    row.append(held[(l, e)])  # kept: slots of one expert share its tensor
                elif prepare.load_missing_from_checkpoint:
                    row.append(self.checkpoint.expert(l, e))
                else:
                    raise RuntimeError("layer %d slot %d: no source for expert %d" % (l, slot, e))
            weights.append(row)

        # Post every receive and send, then wait for all of them: no order can deadlock.
        works = []
        received = 0
        for (l, slot), t in sorted(recvs.items()):
            if t.src_gpu == me:
                continue
            buf = torch.empty(shape)
            weights[l][slot - craft.gpu_slots(new.layers[l], me)[0]] = buf
            works.append(dist.irecv(buf, src=t.src_gpu, group=self.transfer_group,
                                    tag=tag(l, slot)))
            received += buf.numel() * buf.element_size()
        for t, w in sorted(sends, key=lambda s: (s[0].layer, s[0].dst_slot)):
            works.append(dist.isend(w, dst=t.dst_gpu, group=self.transfer_group,
                                    tag=tag(t.layer, t.dst_slot)))
        # gloo's Work.is_completed() stays False until wait() returns, and a wait that times out
        # closes the connection to the peer: so one thread waits for the whole exchange (the
        # transfer group's timeout is long), and staging watches it, the Prepare's deadline and
        # `cancelled`.
        done = threading.Event()
        failure = []

        def wait_all():
            try:
                for w in works:
                    w.wait()
            except Exception as e:  # answered by stage: the transfer failed
                failure.append(e)
            done.set()

        threading.Thread(target=wait_all, name="transfers-%s" % version, daemon=True).start()
        timeout_s = prepare.timeout_ms / 1000 if prepare.timeout_ms else self.transfer_timeout_s
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.005):
            if cancelled.is_set() or time.monotonic() > deadline:
                # gloo cannot cancel a posted operation: its buffers stay alive with the waiting
                # thread, and its tags (tag_salt) match no later version's.
                with self._lock:
                    self.abandoned_exchanges += 1
                if cancelled.is_set():
                    raise craft.StagingCancelled()
                raise RuntimeError("transfers of %s not done within %.1f s" % (version, timeout_s))
        if failure:
            raise RuntimeError("transfers of %s failed: %s" % (version, failure[0]))

        for l, row in enumerate(weights):
            experts = craft.gpu_experts(new, me)[l]
            for i, (e, w) in enumerate(zip(experts, row)):
                if tensor_checksum(w) != self.checkpoint.checksum(l, e):
                    raise RuntimeError("layer %d slot %d: expert %d fails its checksum"
                                       % (l, craft.gpu_slots(new.layers[l], me)[0] + i, e))
        staged = Placement(new, me, weights)
        with self._lock:
            self._staged[version] = staged
            self.bytes_received += received
        log.info("rank %d: staged %s (%d bytes received)", me, version, received)
        return craft.StageResult(bytes_received=received)

    def flip(self, version):
        done = threading.Event()
        with self._lock:
            if version not in self._staged:
                raise RuntimeError("%s is not staged" % version)
            self._pending = (version, done)
        # The commit point has passed: the flip happens once every rank has its commit.
        while not done.wait(0.1):
            if self._stopped.is_set():
                raise RuntimeError("the engine stopped before flipping to %s" % version)

    def drop(self, version):
        with self._lock:
            self._staged.pop(version, None)

    # --- the step loop -----------------------------------------------------------------------

    def request_stop(self):
        self._stop = True

    def request_probe(self):
        """Ask for a forward of the fixed probe batch; `run`'s on_probe gets its output."""
        with self._lock:
            self._probes += 1

    def _agree(self, window, probes_done):
        """Every rank's view of the coming step, exchanged: returns (window id, stop, probe,
        flip). A flip happens when every rank wants the same version (its pending commit, or the
        version it serves)."""
        with self._lock:
            pending = self._pending
            target = pending[0] if pending else self._serving.version
            probes = self._probes
        mine = torch.tensor([window, int(self._stop), probes, *parse_version(target)])
        views = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(views, mine)
        views = torch.stack(views)
        same = bool((views[:, 3:] == mine[3:]).all())
        return (int(views[:, 0].max()), bool(views[:, 1].any()),
                int(views[:, 2].min()) > probes_done, pending is not None and same)

    def run(self, worker, on_step=None, on_probe=None, probe_tokens=64):
        """The step loop: one step per load window, at the window's end, until a rank asks to
        stop. `on_step(window, version, counts)` and `on_probe(output)` observe it."""
        try:
            self._run(worker, on_step, on_probe, probe_tokens)
        finally:
            self._stopped.set()

    def _run(self, worker, on_step, on_probe, probe_tokens):
        last, probes_done = -1, 0
        while True:
            ended = craft.window_id_at(time.time() * 1000, self.window_ms) - 1
            window, stop, probe, flip = self._agree(ended, probes_done)
            window = max(window, last + 1)
            if stop:
                return
            if flip:  # the step boundary
                with self._lock:
                    version, done = self._pending
                    self._serving = self._staged.pop(version)
                    self._pending = None
                done.set()
                log.info("rank %d: serving %s from window %d", self.rank, version, window)
            with self._lock:
                placement = self._serving
            if probe:
                probes_done += 1
                output, _ = self.model(self.checkpoint.tokens("probe", probe_tokens), placement)
                if on_probe:
                    on_probe(output)
            _, counts = self.model(self.checkpoint.tokens(window, self.tokens_per_step),
                                   placement)
            worker.report_window(window, counts, placement.version)
            if on_step:
                on_step(window, placement.version, counts)
            last = window
            time.sleep(max(0.0, (window + 2) * self.window_ms / 1000 - time.time()))

    def verify(self):
        """Every serving slot against the checkpoint's checksum: (version, slots checked,
        [(layer, slot, expert) that differ])."""
        with self._lock:
            placement = self._serving
        bad, checked = [], 0
        for l, row in enumerate(placement.weights):
            for i, (e, w) in enumerate(zip(placement.experts(l), row)):
                checked += 1
                if tensor_checksum(w) != self.checkpoint.checksum(l, e):
                    bad.append((l, placement.first[l] + i, e))
        return placement.version, checked, bad
