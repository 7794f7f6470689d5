"""Sans-IO protocol: bytes, dicts and ``now`` in, decisions out. No sockets, clocks or printing.

The wire header, fragment arithmetic, control frames and both conversation state machines,
path-MTU search and retry steppers. Nothing here imports another layer of udpbench.
"""
