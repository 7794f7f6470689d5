"""The IP reassembly memory of this network namespace: /proc/net/sockstat's FRAG line.

Incomplete datagrams hold it until ``ipfrag_time`` expires them; while it is above
``ipfrag_high_thresh`` the kernel drops new fragments (Ip.ReasmFails).
"""
from __future__ import annotations

DEFAULT_IPFRAG_TIME_S = 30  # the kernel's default, used when the sysctl cannot be read


def memory(v6: bool = False) -> int | None:
    """Bytes of fragments queued for reassembly now, or None if the kernel does not say."""
    path, label = ("/proc/net/sockstat6", "FRAG6:") if v6 else ("/proc/net/sockstat", "FRAG:")
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if words and words[0] == label and "memory" in words:
                    return int(words[words.index("memory") + 1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def expiry_s(v6: bool = False) -> int:
    """``ipfrag_time``: how long an incomplete datagram may hold its fragments, in seconds."""
    path = "/proc/sys/net/ipv6/ip6frag_time" if v6 else "/proc/sys/net/ipv4/ipfrag_time"
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return DEFAULT_IPFRAG_TIME_S
