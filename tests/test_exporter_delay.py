"""The exporter's one-way delay and loss-episode metrics: hand-worked values through the row a
REPORT builds, and a live blast probe on loopback checked against what a second look shows."""
from __future__ import annotations

import urllib.request

import pytest

pytest.importorskip("prometheus_client", reason="the exporter extra is not installed")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from tests.exposition import samples  # noqa: E402
from udpbench.exporter import config, probes  # noqa: E402
from udpbench.exporter.allow import AllowList  # noqa: E402
from udpbench.exporter.service import Exporter  # noqa: E402
from udpbench.protocol import row as row_module  # noqa: E402


TX = {"elapsed_ns": 1_000_000_000, "sent": 100, "errors": {}, "syscalls": 100, "batch": 1,
      "target_gap_ns": 10_000_000, "gap_mean_ns": 10_000_000, "gap_std_ns": 0, "gap_max_ns": 10_000_000}


def report(**extra) -> dict:
    """A receiver's REPORT: 94 of 100 datagrams, six lost in three runs of two."""
    base = {"received": 94, "owd_samples": 94, "min_transit_ns": 0, "max_transit_ns": 0,
            "first_rx_ns": 0, "last_rx_ns": 0,
            "owd_min_ns": 100_000, "owd_p50_ns": 350_000, "owd_p90_ns": 600_000, "owd_p99_ns": 1_100_000,
            "owd_p999_ns": 1_300_000, "owd_max_ns": 2_100_000,
            "sched_owd_min_ns": 120_000, "sched_owd_p50_ns": 1_350_000, "sched_owd_p90_ns": 1_600_000,
            "sched_owd_p99_ns": 2_100_000, "sched_owd_p999_ns": 2_300_000, "sched_owd_max_ns": 3_100_000,
            "loss_burst_count": 3, "loss_burst_mean": 2.0, "loss_burst_max": 2, "loss_gap_mean": 31.0,
            "loss_conditional": 0.5}
    return base | extra


def exposition(rows) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=True)
    probes._row_metrics(registry, "udpbench_blast", rows)
    return samples(generate_latest(registry).decode())


def built(same_clock: bool, **extra):
    return row_module.build(host="h", address="198.18.1.2", port=1060, v6=False, size=1000, engine="send",
                            duration=1.0, rate_bps=800_000, tx=TX, report=report(**extra), path_mtu=1500,
                            same_clock=same_clock)


def test_relative_delays_are_seconds_above_the_smallest_and_say_relative():
    s = exposition([built(same_clock=False)])
    key = 'udpbench_blast_one_way_delay_percentile_seconds{percentile="%s",send_time="%s",size="1000"}'
    # 350 us - 100 us (the smallest actual delay) = 250 us; the scheduled ones shift by the same 100 us.
    assert s[key % ("50", "actual")] == pytest.approx(250e-6)
    assert s[key % ("99.9", "actual")] == pytest.approx(1.2e-3)
    assert s[key % ("50", "scheduled")] == pytest.approx(1.25e-3)
    assert s['udpbench_blast_one_way_delay_min_seconds{send_time="actual",size="1000"}'] == 0
    assert s['udpbench_blast_one_way_delay_max_seconds{send_time="scheduled",size="1000"}'] == pytest.approx(3e-3)
    basis = {b: s[f'udpbench_blast_one_way_delay_basis{{basis="{b}",size="1000"}}']
             for b in ("same-host", "estimated", "relative")}
    assert basis == {"same-host": 0, "estimated": 0, "relative": 1}


def test_same_host_delays_are_absolute():
    s = exposition([built(same_clock=True)])
    assert s['udpbench_blast_one_way_delay_min_seconds{send_time="actual",size="1000"}'] == pytest.approx(100e-6)
    assert s['udpbench_blast_one_way_delay_percentile_seconds{percentile="90",send_time="actual",size="1000"}'] \
        == pytest.approx(600e-6)
    assert s['udpbench_blast_one_way_delay_basis{basis="same-host",size="1000"}'] == 1


def test_loss_episodes_and_the_loss_they_split():
    s = exposition([built(same_clock=True)])
    lost = sum(v for k, v in s.items() if k.startswith("udpbench_blast_lost_datagrams"))
    bursts = s['udpbench_blast_loss_bursts{size="1000"}']
    assert lost == 6 and bursts == 3
    # Three runs of a mean length of two hold the six lost datagrams; RFC 3357's conditional
    # loss probability is (lost - runs) / lost.
    assert bursts * s['udpbench_blast_loss_burst_mean_datagrams{size="1000"}'] == lost
    assert s['udpbench_blast_conditional_loss_ratio{size="1000"}'] == (lost - bursts) / lost
    assert s['udpbench_blast_loss_burst_max_datagrams{size="1000"}'] == 2
    assert s['udpbench_blast_loss_gap_mean_datagrams{size="1000"}'] == 31


def test_a_row_that_received_nothing_exposes_no_delay():
    s = exposition([built(same_clock=True, received=0, owd_samples=0)])
    assert not any("one_way_delay" in k for k in s)
    assert s['udpbench_blast_received_datagrams{size="1000"}'] == 0


def test_a_live_blast_probe_on_loopback_carries_ordered_same_host_delays(loopback_server):
    exporter = Exporter(config.Config(config.default_modules(), config.Limits()), AllowList(["127.0.0.0/8"]),
                        "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{exporter.port}/probe?target=127.0.0.1:{loopback_server.port}&module=blast"
        with urllib.request.urlopen(url, timeout=30) as answer:
            s = samples(answer.read().decode())
    finally:
        exporter.close()
    assert s["udpbench_probe_success"] == 1
    size = 'size="1472"'
    assert s[f'udpbench_blast_received_datagrams{{{size}}}'] > 0
    # Loopback: client and server read one kernel's clock.
    assert s[f'udpbench_blast_one_way_delay_basis{{basis="same-host",{size}}}'] == 1
    for send_time in ("actual", "scheduled"):
        ladder = [s[f'udpbench_blast_one_way_delay_min_seconds{{send_time="{send_time}",{size}}}']]
        ladder += [s[f'udpbench_blast_one_way_delay_percentile_seconds{{percentile="{p}",send_time="{send_time}",'
                     f'{size}}}'] for p in ("50", "90", "99", "99.9")]
        ladder.append(s[f'udpbench_blast_one_way_delay_max_seconds{{send_time="{send_time}",{size}}}'])
        assert ladder == sorted(ladder), (send_time, ladder)
        # No datagram can take longer to arrive than the probe took.
        assert 0 < ladder[0] and ladder[-1] < s["udpbench_probe_duration_seconds"]
    # Delay from the scheduled send time includes the sender's lateness: never less.
    for p in ("50", "99"):
        actual = s[f'udpbench_blast_one_way_delay_percentile_seconds{{percentile="{p}",send_time="actual",{size}}}']
        scheduled = s[f'udpbench_blast_one_way_delay_percentile_seconds{{percentile="{p}",send_time="scheduled",'
                      f'{size}}}']
        assert scheduled >= actual
    # Loss episodes against the loss counted from sent - received: each run holds a lost datagram.
    lost = sum(v for k, v in s.items() if k.startswith("udpbench_blast_lost_datagrams"))
    assert s[f'udpbench_blast_loss_bursts{{{size}}}'] <= lost
