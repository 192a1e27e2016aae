"""Layout helpers every party computes the same way (planner/initial_layout.h).

A layer's slots are GPU-major: GPU 0's slots first, `slots_per_gpu[g]` of them
for GPU g; `phy2log[slot]` is the logical expert a global slot holds.
"""

from craft import _stubs

_stubs.load()
from craft.v1 import layout_pb2  # noqa: E402

INITIAL_VERSION = "0.0"


def assign_slots(slots_per_layer, num_gpus, num_nodes=1):
    """[layer][gpu] slot counts: planner::AssignSlots (equal per-GPU totals).

    Each GPU gets floor(n / D) slots of a layer; the n % D leftover slots go to
    the GPUs with the fewest slots so far, ties broken node-interleaved.
    """
    if num_gpus <= 0 or num_nodes <= 0 or num_gpus % num_nodes:
        raise ValueError("bad cluster shape: %d GPUs on %d nodes" % (num_gpus, num_nodes))
    per_node = num_gpus // num_nodes
    running = [0] * num_gpus
    slots = []
    for n in slots_per_layer:
        if n < 0:
            raise ValueError("a layer asks for %d slots" % n)
        layer = [n // num_gpus] * num_gpus
        order = sorted(range(num_gpus), key=lambda g: (running[g], g % per_node, g // per_node))
        for g in order[: n % num_gpus]:
            layer[g] += 1
        for g in range(num_gpus):
            running[g] += layer[g]
        slots.append(layer)
    return slots


def contiguous_layout(num_layers, num_experts, num_gpus, num_nodes=1):
    """The initial layout, version "0.0": expert e in global slot e of every layer."""
    if num_layers <= 0 or num_experts <= 0:
        raise ValueError("model shape must be positive, got %d x %d" % (num_layers, num_experts))
    layout = layout_pb2.Layout(
        version=INITIAL_VERSION, num_experts=num_experts, num_gpus=num_gpus, num_nodes=num_nodes
    )
    for counts in assign_slots([num_experts] * num_layers, num_gpus, num_nodes):
        layout.layers.add(slots_per_gpu=counts, phy2log=range(num_experts))
    return layout


def gpu_slots(layer, gpu):
    """(first global slot, count) of `gpu`'s slots in a LayerLayout."""
    counts = list(layer.slots_per_gpu)
    if not 0 <= gpu < len(counts):
        raise ValueError("gpu %d is not in a layer of %d GPUs" % (gpu, len(counts)))
    return sum(counts[:gpu]), counts[gpu]


def gpu_experts(layout, gpu):
    """Per layer, the logical expert of each of `gpu`'s slots, in slot order."""
    out = []
    for layer in layout.layers:
        first, count = gpu_slots(layer, gpu)
        out.append(list(layer.phy2log[first : first + count]))
    return out


FNV1A64_OFFSET_BASIS = 0xCBF29CE484222325
FNV1A64_PRIME = 0x100000001B3


def fnv1a64(data, h=FNV1A64_OFFSET_BASIS):
    """FNV-1a, 64 bit: the expert checksum of proto/README.md."""
    for byte in data:
        h = ((h ^ byte) * FNV1A64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h
