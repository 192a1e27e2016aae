#!/usr/bin/env python3
"""Converts an SGLang expert-distribution recorder dump into a craft trace.

SGLang's recorder (--expert-distribution-recorder-mode stat) writes, on
/dump_expert_distribution_record, a torch.save file holding

    {"rank": int,
     "logical_count": int tensor [B, L, E] (one row per buffered forward pass)
                      or [L, E],
     "average_utilization_rate_over_window": float or None}

L counts every decoder layer of the model, dense ones included (their rows are
zero). This script writes craft's trace JSON (planner/io/FORMATS.md):
craft.trace.v1 with B windows for [B, L, E] (windows with no counts, such as
the unfilled part of SGLang's circular buffer, are dropped), the aggregate
format for [L, E]. --layers SPEC keeps only the MoE layers ("3-60", "1,3,5").

    python3 tools/sglang/dump_to_trace.py expert_distribution_recorder_1.pt \\
        --layers 3-60 --out trace.json
    craftctl plan --loads trace.json --gpus 64 --algorithm eplb --format sglang \\
        --num-hidden-layers 61 --moe-layers 3-60 --out sglang.json

Needs only torch (1.13 on). The dump is read with torch's weights_only loader
or, where that torch cannot read it (1.13 cannot read floats), by an unpickler
that builds only tensors and plain values: a dump cannot run code.
"""

import argparse
import json
import pickle
import re
import sys


class DumpError(Exception):
    pass


def parse_layer_spec(spec, num_layers):
    """Layer ids from "3-60" or "1,3,5" (inclusive ranges, ascending, each once)."""
    layers = []
    for item in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if not match:
            raise DumpError(f"layer spec {spec!r}: {item!r} is not a layer id or range")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        item = item.strip()
        if lo < 0 or hi >= num_layers:
            raise DumpError(f"layer spec {spec!r}: {item} is outside the dump's {num_layers} "
                            f"layers (0-{num_layers - 1})")
        if hi < lo:
            raise DumpError(f"layer spec {spec!r}: range {item} is backwards")
        if layers and lo <= layers[-1]:
            raise DumpError(f"layer spec {spec!r}: layer {lo} comes after {layers[-1]}; "
                            "list layers ascending, each once")
        layers.extend(range(lo, hi + 1))
    return layers


_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _load_allowlisted(path, torch):
    """Reads a torch.save zip without torch.load: its pickle may build only
    tensors (from the archive's own storages), OrderedDicts and plain values,
    so nothing can be imported, called or run. For torch versions whose
    weights_only loader cannot read what a dump holds (1.13: floats)."""
    import collections
    import io
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise DumpError(f"{path} is not a torch.save archive (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        storages = {}

        def storage(saved_id):
            kind, dtype_name, key, _location, numel = saved_id
            if kind != "storage" or dtype_name is None:
                raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
            if key not in storages:
                dtype = getattr(torch, dtype_name)
                raw = bytearray(archive.read(f"{prefix}data/{key}"))
                flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                if flat.numel() != numel:
                    raise pickle.UnpicklingError(f"storage {key} holds {flat.numel()} values, "
                                                 f"expected {numel}")
                storages[key] = flat
            return storages[key]

        def rebuild_tensor(flat, offset, size, stride, *_ignored):
            return torch.as_strided(flat, tuple(size), tuple(stride), offset).clone()

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                    return rebuild_tensor
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch" and name in _STORAGE_DTYPES:
                    return _STORAGE_DTYPES[name]  # persistent_load turns it into a dtype
                raise pickle.UnpicklingError(f"{module}.{name} is not part of a recorder dump")

            def persistent_load(self, saved_id):
                return storage(saved_id)

        return Unpickler(io.BytesIO(archive.read(pickles[0])), encoding="utf-8").load()


def load_dump(path):
    import torch  # imported here so that --help works without torch

    try:
        # torch's own safe loader first; older ones (1.13) cannot read the
        # float a dump may hold, so fall back to an allowlisted reader.
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            data = _load_allowlisted(path, torch)
    except DumpError:
        raise
    except TypeError:
        raise DumpError("this torch is too old to load safely (needs weights_only, torch >= 1.13)")
    except Exception as error:  # torch raises many kinds for a bad file
        raise DumpError(f"cannot load {path}: {error}") from None
    if not isinstance(data, dict):
        raise DumpError(f"{path} holds a {type(data).__name__}, not the recorder's dict")
    if "logical_count" not in data:
        if "records" in data:
            raise DumpError(f"{path} is a per-pass/per-token dump (\"records\"); record with "
                            "--expert-distribution-recorder-mode stat for logical counts")
        raise DumpError(f"{path} has no \"logical_count\" (keys: {sorted(map(str, data))})")
    count = data["logical_count"]
    if not isinstance(count, torch.Tensor):
        count = torch.tensor(count)
    if count.dim() not in (2, 3):
        raise DumpError(f"logical_count has shape {list(count.shape)}; expected [B, L, E] "
                        "or [L, E]")
    if count.numel() == 0:
        raise DumpError(f"logical_count is empty (shape {list(count.shape)})")
    if count.is_floating_point():
        if not bool(torch.isfinite(count).all()):
            raise DumpError("logical_count holds NaN or infinite values")
        count = count.round()
    count = count.to(torch.int64)
    if bool((count < 0).any()):
        raise DumpError("logical_count holds negative counts")
    return count


def convert(count, layers, src):
    """The craft trace (a dict) for `count` restricted to `layers` (None: all)."""
    windowed = count.dim() == 3
    num_layers = count.shape[-2]
    if layers is not None:
        count = count[..., layers, :]
    notes = []
    totals = count.sum(dim=-1)  # [B, L] or [L]
    layer_totals = totals.sum(dim=0) if windowed else totals
    empty = [i for i, t in enumerate(layer_totals.tolist()) if t == 0]
    kept = layers if layers is not None else list(range(num_layers))
    if empty:
        ids = [kept[i] for i in empty]
        notes.append(f"layers {ids} have no counts (dense layers?); select the MoE layers "
                     "with --layers")
    trace = {}
    if windowed:
        nonempty = totals.sum(dim=1) > 0
        dropped = int((~nonempty).sum())
        if dropped:
            notes.append(f"dropped {dropped} of {count.shape[0]} windows with no counts")
        count = count[nonempty]
        if count.shape[0] == 0:
            raise DumpError("every window of logical_count is empty")
        trace["format"] = "craft.trace.v1"
    trace["num_layers"] = count.shape[-2]
    trace["num_experts"] = count.shape[-1]
    if windowed:
        trace["windows"] = count.tolist()
    else:
        trace["counts"] = count.tolist()
    trace["src"] = src
    trace["sglang_layers"] = kept
    return trace, notes


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="SGLang expert-distribution dump (.pt) -> craft trace JSON")
    parser.add_argument("dump", help="the recorder's torch.save file")
    parser.add_argument("--out", default="-", help="output JSON file (default: stdout)")
    parser.add_argument("--layers", metavar="SPEC",
                        help="decoder layers to keep, e.g. 3-60 or 1,3,5 (default: all)")
    args = parser.parse_args(argv)
    try:
        count = load_dump(args.dump)
        layers = None
        if args.layers is not None:
            layers = parse_layer_spec(args.layers, count.shape[-2])
        trace, notes = convert(count, layers, args.dump)
    except DumpError as error:
        print(f"dump_to_trace: error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(trace, separators=(",", ":")) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w") as out:
            out.write(text)
    for note in notes:
        print(f"dump_to_trace: {note}", file=sys.stderr)
    shape = "x".join(str(n) for n in count.shape)
    kind = (f"{len(trace['windows'])} windows" if "windows" in trace else "aggregate counts")
    print(f"dump_to_trace: {shape} logical_count -> {trace['num_layers']} layers x "
          f"{trace['num_experts']} experts, {kind}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
