"""A forward blast's per-datagram trace: kept by the server's receiver, fetched after REPORT.

START asks for it with ``trace_limit`` (the server caps it at ``grant.MAX_TRACE_DATAGRAMS``
and says what it granted in STARTED); REPORT carries ``trace_length`` and ``trace_cut``.
The client then sends ``TRACE {session, offset}`` and gets ``TRACE_DATA {offset, count,
data}``, ``data`` being the base64 of the ``count`` entries' columns packed one after the
other, little-endian, in ``COLUMNS`` order. A chunk fits the 64 KiB control frame
(protocol/control.py). The server keeps the trace until the next START, BYE or close.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np

from udpbench.errors import MeasurementError, UserError
from udpbench.protocol import grant
from udpbench.protocol.control import FEATURE_TRACE, ProtocolError

# The receiver's trace columns (engine/_fast.pyx, Receiver.set_trace), in its argument order.
COLUMNS = (("seq", "<u8"), ("scheduled_ns", "<i8"), ("tx_ns", "<i8"), ("rx_ns", "<i8"), ("duplicate", "u1"))
ENTRY_BYTES = sum(np.dtype(kind).itemsize for _, kind in COLUMNS)  # 33
CHUNK_ENTRIES = 1000  # 33,000 bytes, 44,000 in base64: well inside a 64 KiB frame


def buffers(limit: int) -> tuple[np.ndarray, ...]:
    """Empty columns for a receiver to fill: ``Receiver.set_trace(*buffers(n))``."""
    return tuple(np.zeros(limit, kind) for _, kind in COLUMNS)


def granted_limit(start: dict) -> int:
    """The trace a START asks for, capped so a client cannot make the server hold more: 0 for none."""
    return min(int(start.get("trace_limit", 0)), grant.MAX_TRACE_DATAGRAMS)


def chunk(session: int, arrays: tuple, length: int, offset: int) -> dict:
    """The TRACE_DATA frame for entries [offset, offset + CHUNK_ENTRIES) of a kept trace."""
    if not 0 <= offset <= length:
        raise ProtocolError(f"TRACE offset {offset} is outside the kept trace of {length} entries")
    end = min(length, offset + CHUNK_ENTRIES)
    packed = b"".join(np.ascontiguousarray(a[offset:end], kind).tobytes() for a, (_, kind) in zip(arrays, COLUMNS))
    return {"type": "TRACE_DATA", "session": session, "offset": offset, "count": end - offset,
            "data": base64.b64encode(packed).decode("ascii")}


def offers_trace(client) -> bool:
    features = client.hello.get("features")
    return isinstance(features, list) and FEATURE_TRACE in features


def check_offered(client) -> None:
    if not offers_trace(client):
        raise UserError(f"server {client.where} does not return forward traces (it is older than them): "
                        f"trace a reverse run instead, where this side receives")


def fetch(client, session: int, length: int, limit: int) -> tuple[np.ndarray, ...]:
    """The server's kept trace of ``session`` (``length`` entries, from its REPORT), as columns of
    ``limit`` entries (the rest zero) for ``output/trace.py``. MeasurementError for a broken answer."""
    where = f"server {client.where}"
    if not (isinstance(length, int) and not isinstance(length, bool) and 0 <= length <= limit):
        raise MeasurementError(f"{where} sent a broken report: trace_length {length!r} is outside 0..{limit}")
    arrays = buffers(limit)
    offset = 0
    while offset < length:
        answer = client._converse({"type": "TRACE", "session": session, "offset": offset}, "TRACE_DATA")
        count = answer["count"]
        if answer["session"] != session or answer["offset"] != offset or not 0 < count <= length - offset:
            raise MeasurementError(f"{where} sent a trace chunk for entries it was not asked for")
        try:
            packed = base64.b64decode(answer["data"], validate=True)
        except (binascii.Error, ValueError):
            raise MeasurementError(f"{where} sent a trace chunk that is not base64") from None
        if len(packed) != count * ENTRY_BYTES:
            raise MeasurementError(f"{where} sent a trace chunk of {len(packed)} bytes for {count} entries")
        at = 0
        for a, (_, kind) in zip(arrays, COLUMNS):
            size = count * np.dtype(kind).itemsize
            a[offset:offset + count] = np.frombuffer(packed, kind, count, at)
            at += size
        offset += count
    return arrays
