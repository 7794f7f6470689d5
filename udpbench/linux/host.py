"""Facts about this host that measurements compare across the two ends."""
from __future__ import annotations

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def clock_domain() -> str:
    """An id shared by every process that reads the same CLOCK_REALTIME: the kernel's boot id.

    Network namespaces (loopback, the lab) share one kernel and so one clock; two hosts, or two
    boots, do not. Empty when the kernel does not say.
    """
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            return f.read(64).strip()
    except OSError:
        return ""
