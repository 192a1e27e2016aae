"""craft's Python client: PlacementClient (the planner's PlacementService) and
EngineWorker (an inference engine's per-GPU process on the agent's NodeAgent.Attach).

The craft.v1 stubs are generated from proto/craft/v1/*.proto, never committed
(see craft/_stubs.py and clients/python/generate.sh); after `import craft`
they are importable as craft.v1.<name>_pb2 / craft.v1.<name>_pb2_grpc.
"""

from craft import _stubs

_stubs.load()

from craft.errors import CraftError  # noqa: E402
from craft.layouts import (  # noqa: E402
    INITIAL_VERSION,
    assign_slots,
    contiguous_layout,
    fnv1a64,
    gpu_experts,
    gpu_slots,
)
from craft.placement import PlacementClient, make_channel, read_token_file  # noqa: E402
from craft.worker import (  # noqa: E402
    Engine,
    EngineWorker,
    StageResult,
    StagingCancelled,
    WorkerStats,
    window_id_at,
)
from craft.v1 import (  # noqa: E402
    agent_pb2,
    layout_pb2,
    load_pb2,
    placement_pb2,
    worker_pb2,
)

__all__ = [
    "CraftError", "Engine", "EngineWorker", "INITIAL_VERSION", "PlacementClient", "StageResult",
    "StagingCancelled", "WorkerStats", "agent_pb2", "assign_slots", "contiguous_layout",
    "fnv1a64", "gpu_experts", "gpu_slots", "layout_pb2", "load_pb2", "make_channel",
    "placement_pb2", "read_token_file", "window_id_at", "worker_pb2",
]
