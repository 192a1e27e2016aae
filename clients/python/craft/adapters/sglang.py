"""SGLang adapter (docs/engines.md): the expert-distribution recorder's counts in, craft's
committed layout out as SGLang's `physical_to_logical_map`. Imports no SGLang.

Loads in. SGLang's recorder (python/sglang/srt/eplb/expert_distribution.py) gives
`logical_count`, [B, N, E] (B buffered forward passes, N every decoder layer, all ranks
summed) or [N, E], in a torch.save dump or from `dump_record(output_mode="object")`.
`logical_count_to_trace` makes a craft.trace.v1 trace of it for craftctl;
`report_logical_count` reports one window of it through an `EngineWorker`.

Layouts out. `physical_to_logical_map` turns a craft layout into SGLang's map, one row per
decoder layer (dense rows SGLang's trivial map), with the checks of the C++ export
(planner/io/layout_json.cc LayoutToSglang), which defines the semantics;
`update_expert_location_args` gives the tensor and layer ids for
`ExpertLocationMetadata.init_by_mapping` and `ModelRunner.update_expert_location`;
`init_expert_location_json` the file for `--init-expert-location`.
"""

import json

from craft.adapters import (
    _matrix,
    logical_windows_to_trace,
    parse_layer_spec,
    slot_counts_from_logical,
    uniform_rows,
)


def _moe_layers(num_rows, moe_layers, planned):
    if moe_layers is None:
        moe_layers = list(range(num_rows))
    moe_layers = parse_layer_spec(moe_layers, num_rows)
    if len(moe_layers) != planned:
        raise ValueError(
            "the layout has %d MoE layers but the model has %d (%s of %d decoder layers); "
            "plan from loads of exactly the model's MoE layers"
            % (planned, len(moe_layers),
               "layers %d-%d" % (moe_layers[0], moe_layers[-1]) if moe_layers else "none",
               num_rows))
    return moe_layers


def physical_to_logical_map(layout, num_hidden_layers=None, moe_layers=None, *, ep_size=None,
                            num_redundant_experts=None, num_logical_experts=None):
    """SGLang's physical_to_logical_map for `layout` (a craft.v1 Layout): num_hidden_layers rows
    (default: the layout's layer count) of P = E + r slot -> logical expert ids, GPU-major. Plan
    layer i goes into row moe_layers[i] (ids or a spec such as "3-60"; default every row);
    every other row is SGLang's trivial map, slot p -> p % E.

    The optional engine settings are checked against the layout: `ep_size` (SGLang's --ep-size
    must be the layout's GPU count, so that SGLang's slot p // (P / ep_size) is craft's GPU),
    `num_redundant_experts` (--ep-num-redundant-experts, P - E) and `num_logical_experts`
    (the model's E). ValueError for a non-uniform layout or any mismatch."""
    rows = uniform_rows(layout)
    num_experts = int(layout.num_experts)
    width = len(rows[0])
    num_gpus = int(layout.num_gpus)
    if num_logical_experts is not None and num_logical_experts != num_experts:
        raise ValueError("the model has %d routed experts, the layout %d"
                         % (num_logical_experts, num_experts))
    if ep_size is not None and ep_size != num_gpus:
        raise ValueError("SGLang runs with ep_size %d but the layout places slots on %d GPUs; "
                         "plan for --ep-size GPUs" % (ep_size, num_gpus))
    if width % num_gpus:  # uniform_rows makes it so; kept as SGLang's own assertion
        raise ValueError("%d slots do not divide over %d GPUs" % (width, num_gpus))
    if num_redundant_experts is not None and width != num_experts + num_redundant_experts:
        raise ValueError("the layout has %d slots per layer but SGLang expects %d experts + "
                         "%d redundant = %d; start SGLang with --ep-num-redundant-experts %d"
                         % (width, num_experts, num_redundant_experts,
                            num_experts + num_redundant_experts, width - num_experts))
    num_rows = len(rows) if num_hidden_layers is None else int(num_hidden_layers)
    if num_rows <= 0:
        raise ValueError("num_hidden_layers must be positive, got %d" % num_rows)
    moe = _moe_layers(num_rows, moe_layers, len(rows))
    trivial = [p % num_experts for p in range(width)]
    out = [list(trivial) for _ in range(num_rows)]
    for i, row in zip(moe, rows):
        out[i] = row
    return out


def launch_args(layout):
    """The SGLang server arguments the layout's map needs: {"ep_num_redundant_experts": r,
    "ep_size": D}. SGLang never checks the map's width against them."""
    width = len(uniform_rows(layout)[0])
    return {"ep_num_redundant_experts": width - int(layout.num_experts),
            "ep_size": int(layout.num_gpus)}


def init_expert_location_json(layout, num_hidden_layers=None, moe_layers=None, **checks):
    """The --init-expert-location JSON text: {"physical_to_logical_map": [...]} and no other key
    (SGLang passes the object to init_by_mapping as keyword arguments). The same text as
    `craftctl plan --format sglang`."""
    table = physical_to_logical_map(layout, num_hidden_layers, moe_layers, **checks)
    return json.dumps({"physical_to_logical_map": table}, separators=(",", ":"))


def write_init_expert_location(path, layout, num_hidden_layers=None, moe_layers=None,
                               **checks):
    """Writes init_expert_location_json(...) to `path`; returns launch_args(layout)."""
    text = init_expert_location_json(layout, num_hidden_layers, moe_layers, **checks)
    with open(path, "w") as f:
        f.write(text + "\n")
    return launch_args(layout)


def update_expert_location_args(layout, num_hidden_layers, moe_layers, *, device=None,
                                **checks):
    """What SGLang's weight mover takes, for the engine-side hook:

        args = update_expert_location_args(layout, N, moe_layers, ep_size=...,
                                           num_redundant_experts=...)
        metadata = ExpertLocationMetadata.init_by_mapping(
            server_args, model_config, physical_to_logical_map=args["physical_to_logical_map"])
        model_runner.update_expert_location(metadata, update_layer_ids=args["update_layer_ids"])

    "physical_to_logical_map": an int64 tensor [N, P] (on `device`, if given);
    "update_layer_ids": the MoE decoder layers (dense rows never change)."""
    import torch

    table = physical_to_logical_map(layout, num_hidden_layers, moe_layers, **checks)
    moe = _moe_layers(len(table), moe_layers, len(layout.layers))
    tensor = torch.tensor(table, dtype=torch.int64)
    if device is not None:
        tensor = tensor.to(device)
    return {"physical_to_logical_map": tensor, "update_layer_ids": moe,
            "version": layout.version}


def _logical_count(logical_count, moe_layers):
    """[B, L, E] nested lists of the MoE layers (an [N, E] count becomes B = 1)."""
    if hasattr(logical_count, "dim") and logical_count.dim() == 2:
        logical_count = logical_count.unsqueeze(0)
    if hasattr(logical_count, "tolist"):
        logical_count = logical_count.tolist()
    if (logical_count and isinstance(logical_count[0], (list, tuple)) and logical_count[0]
            and not isinstance(logical_count[0][0], (list, tuple))):
        logical_count = [logical_count]  # [N, E]: one pass
    count = _matrix(logical_count, "logical_count", 3)
    num_rows = len(count[0]) if count else 0
    if num_rows == 0 or not count[0][0]:
        raise ValueError("logical_count is empty")
    layers = list(range(num_rows)) if moe_layers is None else parse_layer_spec(moe_layers,
                                                                               num_rows)
    out = []
    for b, step in enumerate(count):
        if len(step) != num_rows:
            raise ValueError("logical_count pass %d has %d layers, pass 0 %d"
                             % (b, len(step), num_rows))
        out.append([step[l] for l in layers])
    for row in (r for step in out for r in step):
        if any(c < 0 for c in row):
            raise ValueError("logical_count holds negative counts")
    return out, layers


def logical_count_to_trace(logical_count, moe_layers=None, top_k=None, src=None):
    """craft.trace.v1 for craftctl from a recorder `logical_count` ([B, N, E] or [N, E], tensor
    or lists), keeping the decoder layers `moe_layers` (the recorder's rows cover every layer).
    The non-empty passes become windows; "sglang_layers" records the kept layers."""
    count, layers = _logical_count(logical_count, moe_layers)
    extra = {"sglang_layers": layers}
    if src is not None:
        extra["src"] = src
    return logical_windows_to_trace(count, top_k=top_k, **extra)


def report_logical_count(worker, logical_count, moe_layers, layout, window_id=None):
    """Reports `logical_count` (all passes summed; the recorder's counts of one window, all
    ranks) as this GPU's window through `worker` (a craft.EngineWorker): each expert's tokens
    split evenly over its replicas in `layout`, the layout SGLang served them with (SGLang's
    map must be this layout's, as installed by update_expert_location). Returns the counts."""
    count, _ = _logical_count(logical_count, moe_layers)
    summed = [[sum(step[l][e] for step in count) for e in range(len(count[0][l]))]
              for l in range(len(count[0]))]
    counts = slot_counts_from_logical(summed, layout, worker.gpu)
    window_id = worker.window_id() if window_id is None else window_id
    worker.report_window(window_id, counts, layout.version)
    return counts
