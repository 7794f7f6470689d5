"""The datagram header: the one source of truth for every byte udpbench puts in a UDP payload.

``_fast.pyx`` mirrors this layout in C (see ``HEADER_SIZE`` and the offsets there); a test
compares bytes built by both.

Layout, 32 bytes, network byte order::

    0   magic    u32   0x55445042 ("UDPB")
    4   version  u8
    5   kind     u8    DATA, PROBE, PROBE_ACK, ECHO, ECHO_REPLY, DISCOVER, DISCOVER_REPLY
    6   flags    u16
    8   session  u64   random per session; datagrams of another session are foreign
    16  seq      u64   sequence number (DATA), probe id (PROBE), request id (ECHO)
    24  tx_ns    u64   sender's CLOCK_REALTIME at send, nanoseconds

Everything after the header is padding (DATA), or a kind-specific body. A DATA payload of
40 bytes or more carries, with flag SCHEDULED, its scheduled send time (u64 ns, the sender's
CLOCK_REALTIME) right after the header; the rest is padding.
"""
from __future__ import annotations

import enum
import struct
from typing import NamedTuple

MAGIC = 0x55445042
VERSION = 1
HEADER = struct.Struct("!IBBHQQQ")
HEADER_SIZE = HEADER.size  # 32

# Largest UDP payloads: 65535 - 20 (IPv4) - 8 (UDP); IPv6's payload-length field excludes
# its own 40-byte header, so 65535 - 8.
MAX_PAYLOAD_IPV4 = 65507
MAX_PAYLOAD_IPV6 = 65527

# The ack to a path-MTU probe: header + the IP size the server saw + when it arrived.
# Never larger than 64 bytes, so a small reverse-path MTU cannot hide it.
PROBE_ACK_BODY = struct.Struct("!IQ")  # rx_len (UDP payload bytes received), rx_ns
PROBE_ACK_SIZE = HEADER_SIZE + PROBE_ACK_BODY.size


class Kind(enum.IntEnum):
    DATA = 1
    PROBE = 2
    PROBE_ACK = 3
    ECHO = 4
    ECHO_REPLY = 5
    DISCOVER = 6
    DISCOVER_REPLY = 7
    NONCE = 8  # a reverse run: the client proves it receives at its address (docs/security.md)


class Flag(enum.IntFlag):
    NONE = 0
    COMPANION = 1  # a path-MTU companion datagram: small, sent beside a probe
    SCHEDULED = 2  # DATA: the body starts with the scheduled send time


SCHEDULED_BODY = struct.Struct("!Q")  # scheduled_ns
SCHEDULED_MIN_SIZE = HEADER_SIZE + SCHEDULED_BODY.size  # 40


NONCE_BYTES = 16


def nonce_datagram(session: int, nonce: bytes) -> bytes:
    """What a client sends the server's session socket before a reverse run: the STARTED nonce."""
    return pack(Kind.NONCE, session, 0) + nonce


def nonce_of(data: bytes, session: int) -> bytes | None:
    """The nonce a NONCE datagram of ``session`` carries, or None for anything else."""
    try:
        header = parse(data)
    except WireError:
        return None
    if header.kind != Kind.NONCE or header.session != session or len(data) != HEADER_SIZE + NONCE_BYTES:
        return None
    return bytes(data[HEADER_SIZE:])


class Header(NamedTuple):
    kind: Kind
    flags: int
    session: int
    seq: int
    tx_ns: int


class WireError(ValueError):
    """A datagram that is not a valid udpbench datagram of this version."""


def pack(kind: int, session: int, seq: int, tx_ns: int = 0, flags: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, int(kind), flags, session, seq, tx_ns)


def datagram(kind: int, session: int, seq: int, size: int, tx_ns: int = 0, flags: int = 0,
             body: bytes = b"") -> bytes:
    """A whole payload of exactly ``size`` bytes: header, body, zero padding."""
    check_size(size)
    head = pack(kind, session, seq, tx_ns, flags) + body
    if len(head) > size:
        raise WireError(f"a {Kind(kind).name} datagram needs at least {len(head)} bytes, not {size}")
    return head + bytes(size - len(head))


def data_datagram(session: int, seq: int, size: int, tx_ns: int, scheduled_ns: int | None = None) -> bytes:
    """A DATA payload as the send loops build it: with its scheduled send time when it fits."""
    if scheduled_ns is None or size < SCHEDULED_MIN_SIZE:
        return datagram(Kind.DATA, session, seq, size, tx_ns)
    return datagram(Kind.DATA, session, seq, size, tx_ns, Flag.SCHEDULED, SCHEDULED_BODY.pack(scheduled_ns))


def scheduled_ns(data: bytes | bytearray | memoryview) -> int | None:
    """The scheduled send time a DATA payload carries, or None."""
    header = parse(data)
    if header.kind != Kind.DATA or not header.flags & Flag.SCHEDULED or len(data) < SCHEDULED_MIN_SIZE:
        return None
    return SCHEDULED_BODY.unpack_from(data, HEADER_SIZE)[0]


def parse(data: bytes | bytearray | memoryview) -> Header:
    """Parse and check the header; raise WireError for anything foreign."""
    if len(data) < HEADER_SIZE:
        raise WireError(f"datagram of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, flags, session, seq, tx_ns = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"bad magic 0x{magic:08x}")
    if version != VERSION:
        raise WireError(f"header version {version}, expected {VERSION}")
    try:
        kind = Kind(kind)
    except ValueError:
        raise WireError(f"unknown datagram kind {kind}") from None
    return Header(kind, flags, session, seq, tx_ns)


def max_payload(family_v6: bool) -> int:
    return MAX_PAYLOAD_IPV6 if family_v6 else MAX_PAYLOAD_IPV4


def check_size(size: int, v6: bool = True) -> None:
    """Refuse payload sizes the header or UDP cannot carry, with the reason."""
    if size < HEADER_SIZE:
        raise WireError(f"payload size {size} is smaller than the {HEADER_SIZE}-byte udpbench header")
    limit = max_payload(v6)
    if size > limit:
        family = "IPv6" if v6 else "IPv4"
        raise WireError(f"payload size {size} exceeds the largest UDP payload over {family} ({limit})")
