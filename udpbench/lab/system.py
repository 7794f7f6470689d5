"""The lab's hands: run ip/tc/nft with one-line errors, read their JSON, end processes in a
namespace, and the nftables rule bodies. Everything here touches the kernel; nothing decides."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

from udpbench.errors import UserError

COMMAND_TIMEOUT = 20.0  # seconds for any one ip/tc/nft call
# nftables: one stateless table per job, so each can be replaced without touching the other.
# No ct expression anywhere: that would load nf_defrag and reassemble fragments at the router.
NFT_LOSS_TABLE = "udpbench_loss"  # netdev family, egress hook of a host's link: sees every fragment
NFT_ICMP_TABLE = "udpbench_icmp"  # inet family, output + forward of the router
NFT_LOSS_RANGE = 1_000_000  # numgen modulus: loss settable to 0.0001 %
LOSS_COMMENT = "udpbench:loss="
BLOCK_ICMP_COMMENT = "udpbench:block-icmp"


def first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}[name]
        raise UserError(f"`{name}` not found: install {package} (apt-get install {package})")
    return path


def cmd(argv: list[str], *, what: str, check: bool = True, input: str | None = None
        ) -> subprocess.CompletedProcess:
    """Run ip/tc/nft; on failure (check) raise a one-line UserError saying what failed and why."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError:
        tool(argv[0])
        raise
    except subprocess.TimeoutExpired:
        raise UserError(f"could not {what}: `{' '.join(argv[:4])} ...` took over {COMMAND_TIMEOUT:g} s") from None
    if check and proc.returncode != 0:
        raise UserError(f"could not {what}: {first_line(proc.stderr or proc.stdout)}")
    return proc


def loads(text: str, default):
    try:
        return json.loads(text) if text and text.strip() else default
    except json.JSONDecodeError:
        return default


def loss_table(dev: str) -> str:
    """The loss table of one router interface (nft names take no '-')."""
    return f"{NFT_LOSS_TABLE}_{dev.replace('-', '_')}"


def nft_loss_body(loss: float, dev: str) -> str:
    threshold = round(loss / 100 * NFT_LOSS_RANGE)
    # The netdev egress hook runs per packet as it reaches the device, after the router has
    # fragmented: each fragment is dropped on its own, like netem would. Neighbour discovery
    # and ARP are spared so the link itself keeps working.
    return (f"  chain egress {{\n"
            f"    type filter hook egress device \"{dev}\" priority 0; policy accept;\n"
            f"    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
            f"nd-router-advert, nd-redirect }} accept\n"
            f"    meta protocol {{ ip, ip6 }} numgen random mod {NFT_LOSS_RANGE} < {threshold} drop "
            f"comment \"{LOSS_COMMENT}{loss:g}\"\n"
            f"  }}\n")


def nft_block_icmp_body() -> str:
    rules = (f"    icmp type destination-unreachable icmp code frag-needed drop comment \"{BLOCK_ICMP_COMMENT}\"\n"
             f"    icmpv6 type packet-too-big drop comment \"{BLOCK_ICMP_COMMENT}\"\n")
    # output: what the router itself sends; forward: what it would pass on from further away.
    return (f"  chain output {{\n    type filter hook output priority 0; policy accept;\n{rules}  }}\n"
            f"  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{rules}  }}\n")


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a process we started: SIGTERM, then SIGKILL after ``grace`` seconds; drains its pipes."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.communicate(timeout=grace)  # also drains and closes its pipes
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def end_processes_in(netns: str, grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL, whatever still runs in the namespace: a live process would keep
    it (and its veths) alive after its name is gone."""
    pids = netns_pids(netns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [pid for pid in pids if alive(pid)]
        if not pids:
            return


def netns_pids(netns: str) -> list[int]:
    out = cmd(["ip", "netns", "pids", netns], what="", check=False).stdout
    return [int(word) for word in out.split() if word.isdigit() and int(word) != os.getpid()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0): reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True
