"""Fragment arithmetic (udpbench/frag.py): worked examples, edges, invariants, and the real
kernel in the lab as the judge (tests marked ``lab``)."""
from __future__ import annotations

import pytest

from udpbench.protocol import frag
from udpbench.protocol import wire

MTUS = [576, 1280, 1337, 1400, 1492, 1500, 9000]


# ---- worked by hand: RFC 791 fragments (offsets in 8-byte units, 20-byte headers), RFC 8200 for IPv6 ----

@pytest.mark.parametrize("v6, payload, k, wire_bytes", [
    (False, 1472, 1, 1538),
    (False, 1473, 2, 1622),  # the last fragment carries 1 byte: 21, padded to 46
    (False, 8972, 7, 9386),
    (False, 65507, 45, 68125),
    (True, 1452, 1, 1538),
    (True, 1453, 2, 1633),
    (True, 65527, 46, 69491),
])
def test_worked_examples_at_1500(v6, payload, k, wire_bytes):
    assert frag.fragments(payload, 1500, v6) == k
    assert frag.wire_bytes(payload, 1500, v6) == wire_bytes


def test_ipv4_at_1500_fragment_sizes():
    assert frag.max_unfragmented_payload(1500) == 1472
    assert frag.fragment_sizes(1472, 1500) == [1500]
    assert frag.fragment_sizes(1473, 1500) == [1500, 21]
    assert frag.fragment_sizes(8972, 1500) == [1500] * 6 + [120]


def test_ipv6_at_1500_fragment_sizes():
    assert frag.max_unfragmented_payload(1500, v6=True) == 1452
    assert frag.fragment_sizes(1452, 1500, v6=True) == [1500]
    # 1448 bytes after the 40-byte header and 8-byte fragment header: 1496, not 1500
    assert frag.fragment_sizes(1453, 1500, v6=True) == [1496, 61]
    assert frag.fragment_sizes(2896 - 8, 1500, v6=True) == [1496, 1496]
    assert frag.fragment_sizes(2896 - 7, 1500, v6=True) == [1496, 1496, 49]


def test_ipv4_at_1400():
    assert frag.max_unfragmented_payload(1400) == 1372
    assert frag.fragments(1372, 1400) == 1
    assert frag.fragments(1373, 1400) == 2
    # non-last fragments carry (1400 - 20) & ~7 = 1376 bytes; the last may carry all 1380
    assert frag.fragment_sizes(1373, 1400) == [1396, 25]
    assert frag.fragment_sizes(2748, 1400) == [1396, 1400]
    assert frag.fragment_sizes(2749, 1400) == [1396, 1396, 25]
    assert [frag.fragments(n, 1400) for n in (2748, 2749, 4124, 4125)] == [2, 3, 3, 4]
    assert frag.wire_bytes(1373, 1400) == 1396 + 38 + 46 + 38


def test_ipv6_at_1400():
    assert frag.max_unfragmented_payload(1400, v6=True) == 1352
    assert frag.fragments(1352, 1400, v6=True) == 1
    assert frag.fragments(1353, 1400, v6=True) == 2
    assert frag.fragment_sizes(1353, 1400, v6=True) == [1400, 57]
    assert frag.max_payload_in(2, 1400, v6=True) == 2 * 1352 - 8


def test_odd_mtu_1337():
    # M - H is not a multiple of 8: the edges where ceil(D / F) would be wrong
    assert [frag.fragments(n, 1337) for n in (2621, 2622)] == [2, 3]
    assert [frag.fragments(n, 1337, v6=True) for n in (2568, 2569)] == [2, 3]


# ---- edges and invariants --------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mtu", MTUS)
def test_p_and_p_plus_one(mtu, v6):
    if v6 and mtu < frag.MIN_MTU_IPV6:
        pytest.skip("no IPv6 below 1280")
    p = frag.max_unfragmented_payload(mtu, v6)
    assert p == mtu - frag.header_overhead(v6)
    assert frag.fragment_sizes(p, mtu, v6) == [mtu]
    assert frag.fragments(p + 1, mtu, v6) == 2


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mtu", MTUS)
def test_max_payload_in_k_is_the_largest_with_k_fragments(mtu, v6):
    if v6 and mtu < frag.MIN_MTU_IPV6:
        pytest.skip("no IPv6 below 1280")
    limit = wire.max_payload(v6)
    k = 1
    while frag.max_payload_in(k, mtu, v6) < limit:
        top = frag.max_payload_in(k, mtu, v6)
        assert frag.fragments(top, mtu, v6) == k
        assert frag.fragments(top + 1, mtu, v6) == k + 1
        k += 1
    assert frag.max_payload_in(k, mtu, v6) == limit
    assert frag.fragments(limit, mtu, v6) == k


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mtu", MTUS)
def test_fragment_sizes_invariants(mtu, v6):
    if v6 and mtu < frag.MIN_MTU_IPV6:
        pytest.skip("no IPv6 below 1280")
    head = frag.IPV6_HEADER + frag.IPV6_FRAG_HEADER if v6 else frag.IPV4_HEADER
    payloads = list(range(0, 3 * mtu)) + list(range(3 * mtu, wire.max_payload(v6) + 1, 997))
    payloads.append(wire.max_payload(v6))
    for n in payloads:
        sizes = frag.fragment_sizes(n, mtu, v6)
        assert len(sizes) == frag.fragments(n, mtu, v6)
        assert all(size <= mtu for size in sizes)
        if len(sizes) == 1:
            assert sizes == [n + frag.header_overhead(v6)]
            continue
        # every fragment but the last carries a multiple of 8 bytes (the offset unit)
        assert all((size - head) % 8 == 0 for size in sizes[:-1]), (n, sizes)
        assert len(set(sizes[:-1])) == 1
        assert sum(size - head for size in sizes) == n + frag.UDP_HEADER
        assert sizes[-1] > head


def test_wire_bytes_pads_to_the_64_byte_frame():
    # 28-byte IP packet: 46 bytes of frame payload (64-byte frame) + 38 overhead
    assert frag.wire_bytes(0, 1500) == 84
    assert frag.wire_bytes(18, 1500) == 84  # exactly 46
    assert frag.wire_bytes(19, 1500) == 85
    assert frag.wire_bytes(1473, 1500) == 1538 + 84  # 21-byte last fragment padded
    for n in (0, 1000, 5000, 65527):  # IPv6 packets are never below 48 bytes + payload
        assert frag.wire_bytes(n, 1500, v6=True) == sum(frag.fragment_sizes(n, 1500, True)) + 38 * frag.fragments(n, 1500, True)


@pytest.mark.parametrize("call", [
    lambda: frag.fragments(-1, 1500),
    lambda: frag.fragments(65508, 1500),
    lambda: frag.fragments(65528, 1500, v6=True),
    lambda: frag.fragments(100, 67),
    lambda: frag.fragment_sizes(100, 1279, v6=True),
    lambda: frag.max_payload_in(0, 1500),
])
def test_refuses_impossible_input(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mtu", [1280, 1400, 1500, 9000])
def test_plan_sizes(mtu, v6):
    plan = frag.plan_sizes(mtu, v6)
    limit = wire.max_payload(v6)
    p = frag.max_unfragmented_payload(mtu, v6)
    assert plan == sorted(set(plan))
    assert all(wire.HEADER_SIZE <= s <= limit for s in plan)
    assert {64, 512, p - 1, p, p + 1, limit} <= set(plan)
    for k in (2, 3):
        top = frag.max_payload_in(k, mtu, v6)
        assert {top, top + 1} <= set(plan)
    # every fragment boundary below the largest payload is there, as a pair
    k = 2
    while frag.max_payload_in(k, mtu, v6) < limit:
        assert frag.max_payload_in(k, mtu, v6) + 1 in plan
        k += 1


@pytest.mark.parametrize("budget", [8, 12, 20])
def test_plan_sizes_budget(budget):
    full = frag.plan_sizes(1500)
    plan = frag.plan_sizes(1500, budget=budget)
    assert len(plan) <= budget < len(full)
    assert set(plan) <= set(full)
    p = frag.max_unfragmented_payload(1500)
    assert {p - 1, p, p + 1, wire.max_payload(False)} <= set(plan)
    two = frag.max_payload_in(2, 1500)
    assert {two, two + 1} <= set(plan)  # the first boundary is kept
    # boundaries stay in pairs
    boundaries = [s for s in plan if s > p + 1 and s != wire.max_payload(False)]
    assert len(boundaries) % 2 == 0


def test_plan_sizes_at_jumbo_mtu_above_the_largest_payload():
    plan = frag.plan_sizes(65535)
    assert plan[-1] == wire.max_payload(False)
    assert frag.fragments(plan[-1], 65535) == 1


# ---- against the kernel ----------------------------------------------------------------------
# One datagram at a time, DF off, client -> router -> server through the small link; a packet
# socket on the server's interface records every fragment before reassembly.

PORT = 47200


@pytest.fixture(scope="module", params=[1400, 1337], ids=lambda m: f"mtu{m}")
def frag_lab(request, make_lab):
    built = make_lab(mtu=request.param)
    try:
        yield built
    finally:
        built.down()


def kernel_fragments(lab, netns_script, sizes, v6, learn):
    """{payload: [IP packet sizes at the server]} for datagrams sent in IP_PMTUDISC_DONT mode.

    learn: first let the client learn the path MTU from the router's ICMP, so the client
    fragments; otherwise (IPv4) the client sends whole packets and the router fragments."""
    lab.forget_pmtu()
    server, client = lab.address("server", v6=v6), lab.address("client", v6=v6)
    capture = netns_script.start(lab, "server", "frag_capture.py", "--iface", "to-router", "--src", client,
                                 "--bind", server, "--port", PORT, "--expect", len(sizes), "--deadline", 5)
    args = ["--to", server, "--port", PORT, "--sizes", ",".join(map(str, sizes)), "--pmtu-mode", 0,
            "--gap", 0.01]
    if learn:
        args += ["--learn", 1500]
    sent = netns_script.run(lab, "client", "udp_send.py", *args)
    got = capture.result()
    lab.forget_pmtu()
    assert sent["sent"] == len(sizes), sent
    if learn:
        assert sent["learned_mtu"] == lab.impairments().mtu
    assert got["received"] == len(sizes)
    return {payload: packets for payload, packets in got["datagrams"]}


def boundary_sizes(mtu, v6, biggest):
    p = frag.max_unfragmented_payload(mtu, v6)
    sizes = {p - 1, p, p + 1, biggest}
    for k in (2, 3):
        top = frag.max_payload_in(k, mtu, v6)
        sizes.update((top, top + 1))
    return sorted(s for s in sizes if s <= biggest)


@pytest.mark.lab
def test_router_fragments_like_frag_py(frag_lab, netns_script):
    """IPv4 datagrams that fit the client's 1500 link leave whole; the router cuts them."""
    mtu = frag_lab.impairments().mtu
    p = frag.max_unfragmented_payload(mtu)
    sizes = [p - 1, p, p + 1, p + 2, p + 8, 1472]
    seen = kernel_fragments(frag_lab, netns_script, sizes, v6=False, learn=False)
    assert seen == {n: frag.fragment_sizes(n, mtu) for n in sizes}


@pytest.mark.lab
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_sender_fragments_like_frag_py(frag_lab, netns_script, v6):
    """After learning the path MTU the client itself fragments, at every boundary up to 64 KiB."""
    mtu = frag_lab.impairments().mtu
    sizes = boundary_sizes(mtu, v6, wire.max_payload(v6)) + [10_000]
    seen = kernel_fragments(frag_lab, netns_script, sizes, v6=v6, learn=True)
    assert seen == {n: frag.fragment_sizes(n, mtu, v6) for n in sizes}


def test_a_sender_that_never_learned_the_path_mtu_doubles_the_cuts():
    # 2000 B fragmented at 1500 (1480 + 528 of IP payload), then the 1500-byte piece again at 1400
    assert frag.fragment_sizes_on_path(2000, 1500, 1400) == [1396, 124, 548]
    assert len(frag.fragment_sizes_on_path(16000, 1500, 1400)) == 21
    # a sender at the path MTU: the router has nothing to cut
    assert frag.fragment_sizes_on_path(2000, 1400, 1400) == frag.fragment_sizes(2000, 1400)
    # IPv6 routers never fragment
    assert frag.fragment_sizes_on_path(2000, 1500, 1400, v6=True) == frag.fragment_sizes(2000, 1500, v6=True)
