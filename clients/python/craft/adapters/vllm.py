"""vLLM adapter (docs/engines.md): an EPLB policy that returns craft's committed map, and
vLLM's `expert_load_window` in to craft. Imports no vLLM at module import time.

vLLM's EPLB (vllm/distributed/eplb/eplb_state.py, EplbState.rearrange) sums its load window
into logical loads and asks its policy (`EPLB_POLICIES[eplb_config.policy]`, a class of
vllm/distributed/eplb/policy/) for

    rebalance_experts(weight [L, E], num_replicas, num_groups, num_nodes, num_ranks
                      [, old_global_expert_indices [L, P]])
        -> physical_to_logical_map [L, P] int64,
           logical_to_physical_map [L, E, X] int64 (slot ids, padded with -1),
           logical_replica_count   [L, E] int64

then moves the weights itself (rebalance_execute.py rearrange_expert_weights_inplace).
`CraftEplbPolicy` answers with craft's committed layout instead of computing one, and falls
back to another policy (vLLM's default) when craft has no layout of the engine's shape.
"""

import logging

from craft.adapters import (
    UNIFORM_HINT,
    _matrix,
    logical_to_physical,
    logical_windows_to_trace,
    uniform_rows,
)

logger = logging.getLogger(__name__)


def layout_maps(layout, num_replicas=None, num_ranks=None, num_logical_experts=None,
                num_layers=None):
    """(phy2log, log2phy, logcnt) of a uniform craft layout as nested lists, in vLLM's policy
    contract: phy2log [L][P]; log2phy [L][E][P - E + 1], each expert's slots ascending, padded
    with -1 (the width vLLM's default policy returns); logcnt [L][E]. The optional engine
    values are checked against the layout; ValueError for any mismatch or a non-uniform
    layout."""
    rows = uniform_rows(layout)
    num_experts = int(layout.num_experts)
    width = len(rows[0])
    for name, want, have in (("MoE layers", num_layers, len(rows)),
                             ("logical experts", num_logical_experts, num_experts),
                             ("physical experts (num_replicas)", num_replicas, width),
                             ("EP ranks", num_ranks, int(layout.num_gpus))):
        if want is not None and int(want) != have:
            raise ValueError("vLLM has %d %s, craft's layout %s has %d"
                             % (want, name, layout.version or "(unversioned)", have))
    log2phy, logcnt = logical_to_physical(rows, num_experts, width - num_experts + 1)
    return rows, log2phy, logcnt


class CraftEplbPolicy:
    """A vLLM EPLB policy (the `AbstractEplbPolicy.rebalance_experts` contract, duck-typed) whose
    answer is craft's committed layout.

    `layout`: where the layout comes from: a PlacementClient (GetLayout on every rebalance),
    a LayoutWatcher, a callable returning a Layout, or a Layout. `fallback`: a policy class
    (or object) with the same `rebalance_experts`, used when craft's layout does not fit: no
    layout, the planner unreachable, another shape, or a non-uniform layout (`UNIFORM_HINT`).
    By default vLLM's DefaultEplbPolicy where vLLM is importable; with fallback=False it raises
    ValueError instead. `last_source` says which answered the last call ("craft <version>" or
    "fallback: <why>")."""

    def __init__(self, layout, fallback=None):
        self._source = layout
        self._fallback = fallback
        self._cached = None
        self.last_source = ""

    def _layout(self):
        source = self._source
        if hasattr(source, "layers"):
            return source
        if hasattr(source, "wait") and hasattr(source, "layout"):  # LayoutWatcher
            return source.layout
        if callable(source):
            return source()
        status = source.layout()  # PlacementClient: GetLayout
        return status.committed

    def craft_layout(self):
        """The layout to answer with: fresh from the source, or the last one it gave when the
        planner cannot be reached now (craft's static stability: the committed layout stands)."""
        try:
            layout = self._layout()
        except Exception as e:
            if self._cached is None:
                raise ValueError("craft has no layout: %s" % e) from None
            logger.warning("craft: planner unavailable (%s); using layout %s",
                           e, self._cached.version)
            return self._cached
        if layout is None or not layout.layers:
            raise ValueError("craft has no committed layout yet")
        self._cached = layout
        return layout

    def rebalance_experts(self, weight, num_replicas, num_groups, num_nodes, num_ranks,
                          old_global_expert_indices=None):
        """vLLM's contract; tensors on `weight`'s device. `weight` is only checked for shape:
        the plan was made by the planner from the windows the engine reported."""
        import torch

        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError("weight must be a [layers, logical experts] tensor, got %s"
                             % ((tuple(weight.shape),) if hasattr(weight, "shape") else
                                type(weight).__name__))
        num_layers, num_experts = weight.shape
        if num_replicas % num_ranks or num_ranks % max(num_nodes, 1):
            raise ValueError("num_replicas %d must be a multiple of num_ranks %d, and that of "
                             "num_nodes %d" % (num_replicas, num_ranks, num_nodes))
        try:
            maps = layout_maps(self.craft_layout(), num_replicas=num_replicas,
                               num_ranks=num_ranks, num_logical_experts=num_experts,
                               num_layers=num_layers)
            version = self._cached.version
        except ValueError as e:
            return self._fall_back(str(e), weight, num_replicas, num_groups, num_nodes,
                                   num_ranks, old_global_expert_indices)
        self.last_source = "craft " + version
        phy2log, log2phy, logcnt = (torch.tensor(m, dtype=torch.int64, device=weight.device)
                                    for m in maps)
        return phy2log, log2phy, logcnt

    def _fall_back(self, why, weight, num_replicas, num_groups, num_nodes, num_ranks, old):
        fallback = self._fallback
        if fallback is None:
            fallback = _default_policy()
        if fallback is None or fallback is False:
            raise ValueError(why)
        logger.warning("craft: %s; rebalancing with %s", why, getattr(
            fallback, "__name__", type(fallback).__name__))
        self.last_source = "fallback: " + why
        args = (weight, num_replicas, num_groups, num_nodes, num_ranks)
        if old is not None:
            try:
                return fallback.rebalance_experts(*args, old)
            except TypeError:  # a policy of the five-argument contract
                pass
        return fallback.rebalance_experts(*args)


def _default_policy():
    try:
        from vllm.distributed.eplb.policy import DefaultEplbPolicy
    except ImportError:
        return None
    return DefaultEplbPolicy


def register(policy, eplb_state=None, name="default"):
    """Makes vLLM rebalance with `policy` (a CraftEplbPolicy). With `eplb_state` (the engine's
    EplbState, after add_model) it replaces that state's policy; otherwise it replaces
    `EPLB_POLICIES[name]` in vllm.distributed.eplb.policy, which EplbState.add_model reads.
    vLLM checks --eplb-config's policy name against a fixed list (EPLBPolicyOption), so the
    policy takes the place of an existing name ("default") rather than adding one. Returns the
    policy it replaced (pass it as the CraftEplbPolicy's fallback). ImportError without vLLM."""
    if eplb_state is not None:
        previous = eplb_state.policy
        eplb_state.policy = policy
        return previous
    try:
        from vllm.distributed.eplb import policy as policies
    except ImportError as e:
        raise ImportError("vLLM is not importable here (%s); register the policy in the "
                          "engine's process" % e) from None
    table = policies.EPLB_POLICIES
    if name not in table:
        raise ValueError("vLLM has no EPLB policy %r to replace (it has %s)"
                         % (name, ", ".join(sorted(table))))
    previous = table[name]
    table[name] = policy
    return previous


def logical_load(expert_load_window, physical_to_logical_map, num_logical_experts):
    """vLLM's per-physical-expert load, [W, L, P] (or one pass, [L, P]), as logical loads
    [W, L, E] lists: what EplbState.rearrange computes before summing the window (the slot's
    expert from physical_to_logical_map [L, P], the map the counts were recorded under)."""
    window = _window(expert_load_window)
    phy2log = _matrix(physical_to_logical_map, "physical_to_logical_map", 2)
    if len(phy2log) != len(window[0]) or any(len(r) != len(phy2log[0]) for r in phy2log):
        raise ValueError("physical_to_logical_map is not [%d layers, %d physical experts]"
                         % (len(window[0]), len(window[0][0])))
    out = []
    for step in window:
        rows = []
        for l, row in enumerate(step):
            if len(row) != len(phy2log[l]):
                raise ValueError("the load window has %d physical experts, the map %d"
                                 % (len(row), len(phy2log[l])))
            logical = [0] * num_logical_experts
            for p, c in enumerate(row):
                e = phy2log[l][p]
                if not 0 <= e < num_logical_experts:
                    raise ValueError("physical expert %d of layer %d maps to %d, outside [0, %d)"
                                     % (p, l, e, num_logical_experts))
                logical[e] += c
            rows.append(logical)
        out.append(rows)
    return out


def _window(expert_load_window):
    if hasattr(expert_load_window, "dim") and expert_load_window.dim() == 2:
        expert_load_window = expert_load_window.unsqueeze(0)
    window = _matrix(expert_load_window, "expert_load_window", 3)
    if not window or not window[0] or not window[0][0]:
        raise ValueError("expert_load_window is empty")
    for step in window:
        if len(step) != len(window[0]):
            raise ValueError("expert_load_window passes differ in layer count")
        if any(c < 0 for row in step for c in row):
            raise ValueError("expert_load_window holds negative counts")
    return window


def gpu_slot_counts(expert_load_window, gpu, num_gpus):
    """counts[layer][i]: the tokens rank `gpu`'s i-th local physical expert received over the
    window, from vLLM's expert_load_window [W, L, P] (or [L, P]) summed over the EP ranks
    (each rank's window counts its own tokens for every physical expert; vLLM all-reduces it
    in rearrange). vLLM's physical experts are rank-major, P / num_gpus per rank, as craft's
    uniform slots are GPU-major, so slot i of the rank is craft's slot i of the GPU."""
    window = _window(expert_load_window)
    width = len(window[0][0])
    if num_gpus <= 0 or width % num_gpus:
        raise ValueError("%d physical experts do not divide over %d ranks" % (width, num_gpus))
    if not 0 <= gpu < num_gpus:
        raise ValueError("rank %d is not one of %d" % (gpu, num_gpus))
    per = width // num_gpus
    return [[sum(step[l][p] for step in window) for p in range(gpu * per, (gpu + 1) * per)]
            for l in range(len(window[0]))]


def report_load_window(worker, expert_load_window, layout, num_gpus=None, window_id=None):
    """Reports this rank's window through `worker` (a craft.EngineWorker for rank worker.gpu):
    gpu_slot_counts of the all-reduced window, under `layout`'s version, the craft layout
    vLLM's physical_to_logical_map was built from (uniform, so the slots line up). Returns the
    counts."""
    uniform_rows(layout)
    num_gpus = int(layout.num_gpus) if num_gpus is None else num_gpus
    counts = gpu_slot_counts(expert_load_window, worker.gpu, num_gpus)
    for l, (row, layer) in enumerate(zip(counts, layout.layers)):
        if len(row) != layer.slots_per_gpu[worker.gpu]:
            raise ValueError("layer %d: rank %d has %d physical experts in vLLM, %d slots in "
                             "craft's layout %s" % (l, worker.gpu, len(row),
                                                    layer.slots_per_gpu[worker.gpu],
                                                    layout.version))
    window_id = worker.window_id() if window_id is None else window_id
    worker.report_window(window_id, counts, layout.version)
    return counts


def load_window_to_trace(expert_load_window, physical_to_logical_map, num_logical_experts,
                         top_k=None):
    """craft.trace.v1 for craftctl from vLLM's expert_load_window (summed over ranks): one
    window per recorded pass, in logical experts; empty passes are dropped."""
    return logical_windows_to_trace(
        logical_load(expert_load_window, physical_to_logical_map, num_logical_experts),
        top_k=top_k)


__all__ = ["CraftEplbPolicy", "UNIFORM_HINT", "gpu_slot_counts", "layout_maps",
           "load_window_to_trace", "logical_load", "register", "report_load_window"]
