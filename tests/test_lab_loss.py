"""In the lab: datagram loss through a lossy link, against the law for k fragments, and its cause."""
import json
import sys

import pytest

from tests.fragment_loss import check_fragment_loss
from udpbench.protocol import frag

pytestmark = pytest.mark.lab

PER_PACKET_LOSS = 0.02  # the router drops each IP packet (each fragment) with this probability
MTU = 1400


LEARN_PMTU = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(0, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF on, so the router answers frag-needed
s.connect((sys.argv[1], 9))
for _ in range(20):  # the lossy link may drop a probe: try again
    try:
        s.send(bytes(1472))
    except OSError:
        pass
    time.sleep(0.05)
    if s.getsockopt(0, 14) < 1500:  # IP_MTU
        break
print(s.getsockopt(0, 14))
"""


def set_reassembly_memory(lab, node, high_thresh):
    """Incomplete datagrams pin fragment memory for 30 s (ipfrag_time); above ipfrag_high_thresh
    the kernel drops new fragments (ReasmFails)."""
    low = min(high_thresh * 3 // 4, 3 << 20)  # the kernel keeps low <= high: set low first
    lab.run(node, ["sh", "-c", f"echo {low} > /proc/sys/net/ipv4/ipfrag_low_thresh && "
                               f"echo {high_thresh} > /proc/sys/net/ipv4/ipfrag_high_thresh"],
            check=True, timeout=10)


def learn_path_mtu(lab, address):
    learned = lab.run("client", [sys.executable, "-c", LEARN_PMTU, address], capture_output=True,
                      text=True, timeout=30)
    assert learned.stdout.strip() == str(MTU), learned.stderr


def test_loss_of_k_fragment_datagrams_follows_the_law(make_lab):
    lab = make_lab(mtu=MTU, loss=100 * PER_PACKET_LOSS)
    # room for every incomplete datagram of the run, so only the link loses fragments
    set_reassembly_memory(lab, "server", 256 << 20)
    address = lab.address("server")
    with lab.serving():
        # The client fragments at its route's MTU: let it learn the path MTU, as PMTUD would,
        # so that each datagram crosses the lossy link as exactly frag.fragments(size, 1400) packets.
        learn_path_mtu(lab, address)
        sizes = [1000, 2000, 4000, 8000, 16000]
        done = lab.run("client", [sys.executable, "-m", "udpbench", "sweep", address, "--sizes",
                                  ",".join(map(str, sizes)), "--duration", "1.5", "--rate", "60M",
                                  "--json", "--no-save"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["rows"]
    for row in rows:
        check_fragment_loss(row, PER_PACKET_LOSS, MTU)
    by_k = {frag.fragments(r["size"], MTU): r["loss_ratio"] for r in rows}
    assert by_k[max(by_k)] > 4 * by_k[1]  # 12 fragments lose far more than one


def test_fragment_memory_exhaustion_is_attributed_to_reassembly(make_lab):
    """With little reassembly memory, incomplete datagrams crowd out new fragments: the row says
    the datagrams died in reassembly at the receiver, not on the link."""
    lab = make_lab(mtu=MTU, loss=100 * PER_PACKET_LOSS)
    set_reassembly_memory(lab, "server", 400_000)
    address = lab.address("server")
    with lab.serving():
        learn_path_mtu(lab, address)
        done = lab.run("client", [sys.executable, "-m", "udpbench", "blast", address, "--size", "16000",
                                  "--duration", "1.5", "--rate", "60M", "--json"],
                       capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout)
    law = 1 - (1 - PER_PACKET_LOSS) ** frag.fragments(16000, MTU)
    assert row["loss_ratio"] > law + 0.1  # far more than the link alone explains
    assert row["receiver_counters"]["Ip.ReasmFails"] > 0
    assert row["loss_reassembly"] > 0.5 * row["lost"]
    assert sum(row[c] for c in ("loss_sender", "loss_socket", "loss_reassembly", "loss_network")) == row["lost"]
