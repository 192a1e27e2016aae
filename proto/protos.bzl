"""The .proto files of craft.v1, by name: one list for every rule that generates from them."""

CRAFT_PROTOS = [
    "agent",
    "layout",
    "load",
    "placement",
    "worker",
]
