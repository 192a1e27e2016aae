"""Starts the ranks of the torch MoE engine: one process per GPU rank, each in one gloo process
group (and a second group for weight transfers) and attached to its node's craft-agent through
craft.EngineWorker. The parent talks to the ranks through queues: it asks for checksums, probes
and a stop, and reads every rank's steps."""

import datetime
import logging
import multiprocessing
import os
import queue
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


def rank_main(rank, config, commands, events):
    """A rank process. config: world_size, num_nodes, master_port, socket (its agent's), model
    (Checkpoint keyword arguments), window_ms."""
    sys.path.insert(0, HERE)
    logging.basicConfig(level=logging.WARNING,
                        format="rank %d %%(levelname)s %%(name)s: %%(message)s" % rank)
    import torch
    import torch.distributed as dist

    import craft
    from moe_engine import Checkpoint, TorchMoEEngine

    # Four ranks share two cores with the craft processes: one thread each keeps the steps
    # short, and every rank computes routing with the same kernels.
    torch.set_num_threads(1)
    world = config["world_size"]
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % config["master_port"],
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    # Transfers run on the EngineWorker's control thread while the step loop runs collectives:
    # a group of their own keeps the two streams of messages apart.
    # Its timeout is long because a gloo wait that times out closes the connection: staging
    # bounds each exchange itself, and abandons the waits of one it gives up on.
    transfer_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=1))
    checkpoint = Checkpoint(**config["model"])
    engine = TorchMoEEngine(rank, world, config["num_nodes"], checkpoint, transfer_group,
                            config["window_ms"])
    model = dict(num_layers=checkpoint.num_layers, num_experts=checkpoint.num_experts,
                 top_k=checkpoint.top_k, bytes_per_expert=checkpoint.bytes_per_expert)
    worker = craft.EngineWorker(engine, "unix:" + config["socket"], rank, model=model,
                                transfer_endpoint="127.0.0.1:%d" % config["master_port"],
                                memory_bytes=1 << 30, window_ms=config["window_ms"],
                                max_backoff_s=1.0)
    worker.start()

    def serve():
        while True:
            command = commands.get()
            if command == "stop":
                engine.request_stop()
                return
            if command == "probe":
                engine.request_probe()
            elif command == "verify":
                version, checked, bad = engine.verify()
                stats = worker.stats()
                events.put(("verify", rank, dict(version=version, checked=checked, bad=bad,
                                                 bytes_received=engine.bytes_received,
                                                 flips=stats.flips,
                                                 prepares_ready=stats.prepares_ready)))

    threading.Thread(target=serve, daemon=True).start()
    try:
        engine.run(worker,
                   on_step=lambda window, version, counts: events.put(
                       ("step", rank, (window, version, [sum(row) for row in counts]))),
                   on_probe=lambda output: events.put(("probe", rank, output.numpy().copy())))
    finally:
        worker.stop()
        events.put(("exit", rank, None))
        if engine.abandoned_exchanges:
            # Operations of an abandoned exchange are still posted, and gloo aborts a process
            # that tears down a group with pending operations: leave without destructors.
            events.close()
            events.join_thread()
            os._exit(0)
        dist.destroy_process_group()


class Ranks:
    """world_size rank processes (spawned, so each starts a fresh interpreter and torch), and
    what they report: steps[window][rank] = (version, per-layer tokens), the last verify and
    probes per rank."""

    def __init__(self, world_size, num_nodes, sockets, model, window_ms, master_port):
        context = multiprocessing.get_context("spawn")
        self.world_size = world_size
        self.events = context.Queue()
        self.commands = [context.Queue() for _ in range(world_size)]
        self.steps = {}
        self.versions = {}
        self.verifies = {}
        self.probes = {r: [] for r in range(world_size)}
        self.exited = set()
        self._cv = threading.Condition()
        per_node = world_size // num_nodes
        self.processes = [context.Process(
            target=rank_main, name="rank%d" % r, daemon=True,
            args=(r, dict(world_size=world_size, num_nodes=num_nodes, master_port=master_port,
                          socket=sockets[r // per_node], model=model, window_ms=window_ms),
                  self.commands[r], self.events)) for r in range(world_size)]
        for p in self.processes:
            p.start()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while len(self.exited) < self.world_size:
            try:
                kind, rank, body = self.events.get(timeout=0.5)
            except queue.Empty:
                if all(not p.is_alive() for p in self.processes):
                    return
                continue
            with self._cv:
                if kind == "step":
                    window, version, loads = body
                    self.steps.setdefault(window, {})[rank] = (version, loads)
                    self.versions[rank] = version
                elif kind == "verify":
                    self.verifies[rank] = body
                elif kind == "probe":
                    self.probes[rank].append(body)
                elif kind == "exit":
                    self.exited.add(rank)
                self._cv.notify_all()

    def wait(self, predicate, timeout):
        """Waits until predicate(self) holds (under the lock); returns whether it did."""
        with self._cv:
            return self._cv.wait_for(lambda: predicate(self), timeout)

    def send(self, command):
        if command == "verify":  # the answers to come replace the last ones
            with self._cv:
                self.verifies.clear()
        for q in self.commands:
            q.put(command)

    def windows(self, version):
        """Window ids every rank stepped on `version`, in order."""
        with self._cv:
            return sorted(w for w, ranks in self.steps.items()
                          if len(ranks) == self.world_size
                          and all(v == version for v, _ in ranks.values()))

    def gpu_loads(self, window):
        """[layer][rank]: the tokens each rank's slots served in `window`."""
        with self._cv:
            ranks = self.steps[window]
            layers = len(ranks[0][1])
            return [[ranks[r][1][l] for r in range(self.world_size)] for l in range(layers)]

    def stop(self, timeout=20):
        self.send("stop")
        for p in self.processes:
            p.join(timeout)
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)
