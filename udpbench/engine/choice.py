"""How the sender hands datagrams to the kernel, and which way fits a payload size.

- ``send``: one ``send()`` per datagram, the way iperf3 does it.
- ``mmsg``: ``sendmmsg()`` with up to 64 datagrams per call: fewer syscalls, same datagrams.
- ``gso``: UDP generic segmentation offload (``UDP_SEGMENT``, Linux 4.18+): one buffer of up
  to 128 datagrams (64 before Linux 6.x) goes down the stack once and is cut into datagrams at the device (or in
  software just before it), so the per-datagram cost of the stack is paid once per buffer.
  Every segment must fit the path MTU unfragmented, and the buffer must fit the 64 KiB IP
  limit, so GSO cannot send datagrams that need IP fragmentation.
- ``auto`` (the default): ``gso`` where it fits, ``mmsg`` otherwise.

When the kernel refuses a GSO send, at the start or mid-run, the send loop goes on with
``sendmmsg`` for the same session and the row says so.

The engine a row reports is the one that ran; ``engine_requested`` and ``engine_note`` say
what was asked for and why it was not used.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

from udpbench.engine import _fast
from udpbench.protocol import frag
from udpbench.errors import UserError, errno_name

ENGINES = {"send": _fast.ENGINE_SEND, "mmsg": _fast.ENGINE_MMSG, "gso": _fast.ENGINE_GSO}
CHOICES = ("auto", *ENGINES)
GSO_MAX_BYTES = _fast.GSO_MAX_BYTES  # what one GSO buffer may carry (below 64 KiB with headers)


@dataclass(frozen=True)
class Choice:
    engine: str  # the engine that runs
    requested: str  # what the user asked for
    note: str = ""  # why the requested engine does not run, e.g. "gso: payload exceeds path MTU"

    @property
    def label(self) -> str:
        return f"{self.engine} ({self.note})" if self.note else self.engine


def gso_obstacle(size: int, path_mtu: int, v6: bool) -> str | None:
    """Why GSO cannot carry ``size``-byte payloads on this path, or None if it can."""
    if frag.header_overhead(v6) + size > path_mtu:
        return "payload exceeds path MTU"
    if size > GSO_MAX_BYTES:
        return "payload exceeds the 64 KiB GSO buffer"
    return None


def choose(requested: str, size: int, path_mtu: int, v6: bool, gso_available: bool = True) -> Choice:
    """The engine that runs for a request, a payload size and a path MTU.

    ``auto`` takes GSO when the payload fits the path MTU and at least two datagrams fit one
    GSO buffer (with one, GSO saves nothing); otherwise mmsg. An explicit ``gso`` that cannot
    work falls back to mmsg with a note, rather than fail a sweep that crosses the MTU.
    """
    if requested not in CHOICES:
        raise UserError(f"unknown engine {requested!r}: choose from {', '.join(CHOICES)}")
    if requested in ("send", "mmsg"):
        return Choice(requested, requested)
    obstacle = gso_obstacle(size, path_mtu, v6)
    if obstacle is None and not gso_available:
        obstacle = "this kernel has no UDP_SEGMENT"
    if obstacle is None and requested == "auto" and 2 * size > GSO_MAX_BYTES:
        obstacle = "only one datagram per GSO buffer"
    if obstacle is None:
        return Choice("gso", requested)
    return Choice("mmsg", requested, f"gso: {obstacle}")


def fell_back(choice: Choice, err: int, gso_sent: int) -> Choice:
    """The engine after the kernel refused a GSO send and the loop went on with sendmmsg.

    Refused at once: an old kernel, a device without checksum offload, UDP checksums off.
    Refused later with EMSGSIZE: the path MTU fell below the payload during the run (an ICMP
    "fragmentation needed" arrived), and GSO cannot fragment.
    """
    name = errno_name(err)
    if gso_sent == 0:
        return Choice("mmsg", choice.requested, f"gso: refused by the kernel ({name})")
    why = " (path MTU fell below the payload)" if err == errno.EMSGSIZE else ""
    plural = "" if gso_sent == 1 else "s"
    return Choice("mmsg", choice.requested, f"gso: {name} after {gso_sent} datagram{plural}{why}; mmsg from there")
