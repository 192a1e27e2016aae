"""Engine adapters: craft layouts out to an inference engine's expert-placement API, and the
engine's load counters in to craft (docs/engines.md).

`craft.adapters.sglang` and `craft.adapters.vllm` are small modules that import neither engine:
they produce what the engine's own functions take (maps, tensors, JSON) and are called from a
hook in the engine. torch is imported only by the functions that build tensors.

What both share lives here:

- `uniform_rows(layout)`: the layout's per-layer slot -> expert rows, after checking what stock
  SGLang and vLLM require: the same number of slots on every GPU in every layer.
- `slot_counts_from_logical(...)`: one GPU's per-slot window from logical expert counts.
- `logical_windows_to_trace(...)`: craft.trace.v1 (planner/io/FORMATS.md) for craftctl.
- `layout_from_json(...)`: a craft.layout.v1 file as a `craft.layout_pb2.Layout`.
- `LayoutWatcher`: the committed layout, kept current from `PlacementClient.watch()`.
"""

import json
import re
import threading

UNIFORM_HINT = (
    "stock SGLang and vLLM need the same number of slots on every GPU in every layer; plan "
    "with uniform slots (craftctl plan --uniform, the planner's replan.uniform: true, or "
    "--algorithm eplb / none), or patch the engine for per-layer expert counts "
    "(docs/engines.md)")


def _layers(layout):
    layers = list(layout.layers)
    if not layers:
        raise ValueError("the layout has no layers")
    return layers


def check_layout(layout):
    """Raises ValueError unless `layout` (a craft.v1 Layout) is well formed: every layer has
    num_gpus slot counts adding up to its phy2log, ids are in [0, num_experts), and every expert
    has a replica (what planner::Layout::Validate checks)."""
    num_experts = int(layout.num_experts)
    num_gpus = int(layout.num_gpus)
    if num_experts <= 0 or num_gpus <= 0:
        raise ValueError("layout %r has %d experts on %d GPUs"
                         % (layout.version, num_experts, num_gpus))
    for l, layer in enumerate(_layers(layout)):
        slots = list(layer.slots_per_gpu)
        if len(slots) != num_gpus:
            raise ValueError("layer %d has slot counts for %d GPUs, the layout %d"
                             % (l, len(slots), num_gpus))
        if any(s < 0 for s in slots) or sum(slots) != len(layer.phy2log):
            raise ValueError("layer %d: slots_per_gpu %s do not add up to its %d slots"
                             % (l, slots, len(layer.phy2log)))
        seen = [False] * num_experts
        for p, e in enumerate(layer.phy2log):
            if not 0 <= e < num_experts:
                raise ValueError("layer %d slot %d holds expert %d, outside [0, %d)"
                                 % (l, p, e, num_experts))
            seen[e] = True
        if not all(seen):
            raise ValueError("layer %d has no replica of expert %d" % (l, seen.index(False)))


def uniform_rows(layout):
    """[layer][slot] logical expert ids of a layout with the same number of slots on every GPU
    in every layer; ValueError naming the first layer and GPU that differ otherwise."""
    check_layout(layout)
    layers = _layers(layout)
    expected = layers[0].slots_per_gpu[0]
    for l, layer in enumerate(layers):
        for g, s in enumerate(layer.slots_per_gpu):
            if s != expected:
                raise ValueError(
                    "layout %s is not uniform: layer %d puts %d slots on GPU %d where layer 0 "
                    "has %d per GPU; %s" % (layout.version or "(unversioned)", l, s, g, expected,
                                            UNIFORM_HINT))
    return [list(layer.phy2log) for layer in layers]


def logical_to_physical(rows, num_experts, width=None):
    """(map, counts) for [layer][slot] rows: map[l][e] lists e's slots ascending, padded with -1
    to `width` entries (default: the most replicas any expert has); counts[l][e] is how many."""
    lists = []
    for row in rows:
        per_expert = [[] for _ in range(num_experts)]
        for p, e in enumerate(row):
            per_expert[e].append(p)
        lists.append(per_expert)
    most = max((len(s) for layer in lists for s in layer), default=0)
    width = most if width is None else width
    if most > width:
        raise ValueError("an expert has %d replicas, more than the %d columns asked for"
                         % (most, width))
    table = [[s + [-1] * (width - len(s)) for s in layer] for layer in lists]
    counts = [[len(s) for s in layer] for layer in lists]
    return table, counts


def parse_layer_spec(spec, num_layers):
    """Decoder layer ids from "3-60" or "1,3,5" (ascending, each once), as craftctl's
    --moe-layers reads them (planner/io/layout_json.h ParseLayerSpec)."""
    if not isinstance(spec, str):
        return _check_layer_ids(list(spec), num_layers)
    layers = []
    for item in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if not match:
            raise ValueError("layer spec %r: %r is not a layer id or range" % (spec, item))
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError("layer spec %r: range %d-%d is backwards" % (spec, lo, hi))
        layers.extend(range(lo, hi + 1))
    return _check_layer_ids(layers, num_layers)


def _check_layer_ids(layers, num_layers):
    for i, l in enumerate(layers):
        if not 0 <= l < num_layers or (i and l <= layers[i - 1]):
            raise ValueError("MoE layer ids must ascend within [0, %d), each once; entry %d is %d"
                             % (num_layers, i, l))
    return layers


def _matrix(value, name, dims):
    """`value` (a tensor, or nested lists) as nested Python lists with `dims` dimensions."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    depth, probe = 0, value
    while isinstance(probe, (list, tuple)):
        depth += 1
        probe = probe[0] if probe else None
    if depth != dims:
        raise ValueError("%s must have %d dimensions, got %d" % (name, dims, depth))
    return value


def split_evenly(count, parts):
    """`count` tokens over `parts` replicas: equal shares, the remainder to the first ones
    (the planner's replay splits an expert's tokens evenly over its replicas)."""
    base, extra = divmod(int(count), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def slot_counts_from_logical(logical, layout, gpu):
    """counts[layer][i]: the tokens of `gpu`'s i-th slot in `layout`, from logical[layer][e]
    (all ranks' tokens of one window, one row per layer of the layout). Each expert's count is
    split evenly over its replicas, so the GPUs' windows add up to `logical` exactly. For
    EngineWorker.report_window(window_id, counts, layout.version)."""
    rows = _matrix(logical, "logical counts", 2)
    layers = _layers(layout)
    if len(rows) != len(layers):
        raise ValueError("logical counts have %d layers, the layout %d" % (len(rows), len(layers)))
    if not 0 <= gpu < layout.num_gpus:
        raise ValueError("gpu %d is not in a layout of %d GPUs" % (gpu, layout.num_gpus))
    out = []
    for l, (row, layer) in enumerate(zip(rows, layers)):
        if len(row) != layout.num_experts:
            raise ValueError("logical counts of layer %d have %d experts, the layout %d"
                             % (l, len(row), layout.num_experts))
        if any(c < 0 for c in row):
            raise ValueError("logical counts of layer %d are negative" % l)
        replicas = [[] for _ in range(layout.num_experts)]
        for p, e in enumerate(layer.phy2log):
            replicas[e].append(p)
        share = {}
        for e, slots in enumerate(replicas):
            if slots:
                share.update(zip(slots, split_evenly(round(row[e]), len(slots))))
        first = sum(layer.slots_per_gpu[:gpu])
        out.append([share[p] for p in range(first, first + layer.slots_per_gpu[gpu])])
    return out


def logical_windows_to_trace(windows, top_k=None, **extra):
    """craft.trace.v1 (planner/io/FORMATS.md) with windows[b][layer][e] as its windows; windows
    with no counts (an unfilled recorder buffer) are dropped. `extra` keys (readers ignore them)
    go after the format's own."""
    windows = _matrix(windows, "windows", 3)
    kept = [w for w in windows if any(any(c for c in row) for row in w)]
    if not kept:
        raise ValueError("every window is empty")
    num_layers, num_experts = len(kept[0]), len(kept[0][0])
    for b, w in enumerate(kept):
        if len(w) != num_layers or any(len(row) != num_experts for row in w):
            raise ValueError("window %d is not %d x %d" % (b, num_layers, num_experts))
        if any(c < 0 for row in w for c in row):
            raise ValueError("window %d has negative counts" % b)
    trace = {"format": "craft.trace.v1", "num_layers": num_layers, "num_experts": num_experts}
    if top_k:
        trace["top_k"] = int(top_k)
    trace["windows"] = [[[int(round(c)) for c in row] for row in w] for w in kept]
    trace.update(extra)
    return trace


def layout_from_json(text_or_dict):
    """A craft.layout.v1 file (what `craftctl plan` and `craftctl layout --out` write) as a
    craft.layout_pb2.Layout."""
    from craft.v1 import layout_pb2

    data = json.loads(text_or_dict) if isinstance(text_or_dict, (str, bytes)) else text_or_dict
    if data.get("format") != "craft.layout.v1":
        raise ValueError("not a craft.layout.v1 file (format %r)" % data.get("format"))
    layout = layout_pb2.Layout(version=str(data.get("version", "")),
                               num_experts=data["num_experts"], num_gpus=data["num_gpus"],
                               num_nodes=data["num_nodes"])
    for layer in data["layers"]:
        layout.layers.add(slots_per_gpu=layer["slots_per_gpu"], phy2log=layer["phy2log"])
    if len(layout.layers) != data["num_layers"]:
        raise ValueError("num_layers is %d but %d layers are listed"
                         % (data["num_layers"], len(layout.layers)))
    check_layout(layout)
    return layout


class LayoutWatcher:
    """Keeps the planner's committed layout current from `client.watch()` (a PlacementClient of
    its own: close() closes it) on a thread of its own, so that an engine hook reads it without
    a call to the planner. `on_commit(layout)`,
    if given, runs on that thread for every new committed version."""

    def __init__(self, client, on_commit=None):
        self._client = client
        self._on_commit = on_commit
        self._cv = threading.Condition()
        self._layout = None
        self.error = None
        self._thread = threading.Thread(target=self._run, name="craft-layout-watch", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for status in self._client.watch():
                with self._cv:
                    self._layout = status.committed
                    self._cv.notify_all()
                if self._on_commit is not None:
                    self._on_commit(status.committed)
        except Exception as e:  # kept for the caller; the watch itself reconnects
            with self._cv:
                self.error = e
                self._cv.notify_all()

    @property
    def layout(self):
        """The latest committed layout seen, or None before the first."""
        with self._cv:
            return self._layout

    def wait(self, timeout, version=None):
        """The committed layout once one (other than `version`, if given) arrived, else None."""
        with self._cv:
            self._cv.wait_for(lambda: self.error is not None or (
                self._layout is not None and self._layout.version != version), timeout)
            if self._layout is not None and self._layout.version != version:
                return self._layout
            return None

    def close(self):
        """Ends the watch by closing the client (a PlacementClient's watch ends only with the
        client), so give the watcher a client of its own."""
        self._client.close()
        self._thread.join(5)
