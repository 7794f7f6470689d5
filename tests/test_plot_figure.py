"""What the sweep figure shows, read back from its matplotlib objects: units, series, legends, delay panel."""
from pathlib import Path

import pytest

from udpbench import cli
from udpbench.measure.sweep import sweep
from udpbench.output import plot, results

EXAMPLES = Path(__file__).resolve().parent.parent / "results" / "examples"
LOOPBACK = {"hosts": [{"host": "127.0.0.1", "path_mtu": 65535, "family": 4}]}


def panels(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def auto_loopback_rows(goodputs=(8e9, 20e9, 29e9, 38e9, 35e9, 33e9)):
    """A loopback sweep as `auto` measures it: GSO up to 34031 bytes, mmsg from 34032."""
    sizes = (64, 512, 1472, 16272, 36992, 65507)
    return [{"host": "127.0.0.1", "size": size, "engine": "gso" if size < 34032 else "mmsg", "sent": 1000,
             "received": 950, "lost": 50, "loss_ratio": 0.05, "goodput_bps": g, "jitter_ms": 0.004,
             "loss_sender": 0, "loss_socket": 50, "loss_reassembly": 0, "loss_network": 0, "path_mtu": 65535}
            for size, g in zip(sizes, goodputs)]


def with_delays(rows, basis="same-host", p50=(5.0, 6.0, 7.0, 8.0, 300.0, 400.0), stall_us=0.0, error_us=0.0):
    for row, p in zip(rows, p50):
        row.update(owd_basis=basis, clock_offset_us=0.0, clock_error_us=error_us)
        for prefix, late in (("owd", 0.0), ("sched_owd", stall_us)):
            for part, factor in (("min", 0.5), ("p50", 1), ("p90", 2), ("p99", 4), ("p999", 8), ("max", 9)):
                row[f"{prefix}_{part}_us"] = p * factor + (late if part in ("p99", "p999", "max") else 0.0)
    return rows


@pytest.mark.parametrize("goodputs, unit, top", [
    ((8e9, 20e9, 29e9, 38e9, 35e9, 40e9), "Gbit/s", 46.0),        # loopback at max: 40 Gbit/s, not 40000 Mbit/s
    ((90e6, 95e6, 97e6, 96e6, 97e6, 96e6), "Mbit/s", 97 * 1.15),
    ((200e3, 400e3, 500e3, 450e3, 480e3, 300e3), "kbit/s", 500 * 1.15),
])
def test_goodput_axis_takes_the_unit_its_largest_value_reaches(goodputs, unit, top):
    fig = plot.figure(LOOPBACK, auto_loopback_rows(goodputs))
    ax = panels(fig)["goodput"]
    assert ax.get_ylabel() == f"goodput ({unit})"
    assert ax.get_ylim()[1] == pytest.approx(top)


def test_one_line_per_host_when_auto_switches_engine():
    rows = auto_loopback_rows()
    fig = plot.figure(LOOPBACK, rows)
    # one loss panel, not one per engine; no delay fields: no delay panel
    assert list(panels(fig)) == ["goodput", "loss", "jitter"]
    ax = panels(fig)["goodput"]
    assert legend_texts(ax) == ["127.0.0.1 (MTU 65535)", "engine gso", "engine mmsg"]
    host_lines = [line for line in ax.get_lines() if line.get_label() == "127.0.0.1 (MTU 65535)"]
    assert len(host_lines) == 1
    assert list(host_lines[0].get_xdata()) == [64, 512, 1472, 16272, 36992, 65507]  # one line through both engines
    markers = {line.get_marker(): list(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "None"}
    assert markers == {"o": [64, 512, 1472, 16272], "s": [36992, 65507]}


def test_an_engine_comparison_at_the_same_sizes_keeps_a_line_per_engine():
    rows = [{"host": "h", "size": size, "engine": engine, "sent": 10, "received": 10, "goodput_bps": 1e6}
            for engine in ("send", "mmsg") for size in (64, 1472)]
    fig = plot.figure({"hosts": [{"host": "h", "path_mtu": 1500, "family": 4}]}, rows)
    texts = legend_texts(panels(fig)["goodput"])
    assert texts[:4] == ["h send (MTU 1500, P 1472)", "h mmsg (MTU 1500, P 1472)", "engine send", "engine mmsg"]


def test_both_directions_of_a_host_are_two_lines():
    rows = [{"host": "h", "size": size, "direction": direction, "engine": "gso", "goodput_bps": 1e8}
            for direction in ("forward", "reverse") for size in (64, 1472)]
    texts = legend_texts(panels(plot.figure({"hosts": []}, rows))["goodput"])
    assert texts[:2] == ["h forward", "h reverse"]


def test_delay_panel_draws_both_bases_with_the_basis_named():
    rows = with_delays(auto_loopback_rows(), stall_us=200_000.0)  # a 200 ms stall: in sched p99 only
    fig = plot.figure(LOOPBACK, rows)
    assert list(panels(fig)) == ["goodput", "loss", "one-way delay", "jitter"]
    ax = panels(fig)["one-way delay"]
    assert legend_texts(ax) == ["p50 from actual send time", "p99 from actual send time",
                                "p50 from scheduled send time", "p99 from scheduled send time"]
    assert "same-host" in ax.get_title(loc="left")
    assert ax.get_ylabel() == "one-way delay (ms)"  # the largest, 200 ms and more, is past 1000 us
    lines = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
    assert [(line.get_linestyle(), line.get_linewidth()) for line in lines] == [
        ("-", 1.8), ("-", 0.9), ("--", 1.8), ("--", 0.9)]
    p99_actual, p99_scheduled = lines[1].get_ydata(), lines[3].get_ydata()
    assert list(p99_actual) == pytest.approx([0.020, 0.024, 0.028, 0.032, 1.2, 1.6])  # 4 x p50, in ms
    assert list(p99_scheduled) == pytest.approx([200.020, 200.024, 200.028, 200.032, 201.2, 201.6])


def test_delay_panel_in_microseconds_and_rows_without_a_sample_left_out():
    rows = with_delays(auto_loopback_rows(), p50=(5, 6, 7, 8, 100, 200))
    rows[2].update(received=0, sent=1000, lost=1000, loss_ratio=1.0)  # fields hold 0, not a delay
    ax = panels(plot.figure(LOOPBACK, rows))["one-way delay"]
    assert ax.get_ylabel() == "one-way delay (\u00b5s)"  # the largest drawn, p99 = 4 x 200, is 800 us
    p50 = [line for line in ax.get_lines() if line.get_linestyle() == "-"][0]
    assert 1472 not in list(p50.get_xdata()) and len(p50.get_xdata()) == 5


@pytest.mark.parametrize("basis, error, ylabel, words", [
    ("relative", -1.0, "one-way delay above min", "relative: above the smallest delay"),
    ("estimated", 12.0, "one-way delay", "estimated: corrected by the clock offset (\u00b112 \u00b5s)"),
])
def test_delay_panel_notes_a_basis_other_than_same_host(basis, error, ylabel, words):
    rows = with_delays(auto_loopback_rows(), basis=basis, p50=(1, 2, 3, 4, 5, 6), error_us=error)
    ax = panels(plot.figure(LOOPBACK, rows))["one-way delay"]
    assert ax.get_ylabel() == f"{ylabel} (\u00b5s)"
    assert words in ax.get_title(loc="left")


def test_hosts_with_different_bases_are_named_each():
    lan = with_delays([dict(r, host="198.18.1.2") for r in auto_loopback_rows()], basis="relative")
    meta = {"hosts": LOOPBACK["hosts"] + [{"host": "198.18.1.2", "path_mtu": 1500, "family": 4}]}
    title = panels(plot.figure(meta, with_delays(auto_loopback_rows()) + lan))["one-way delay"].get_title(loc="left")
    assert "127.0.0.1: same-host" in title and "198.18.1.2: relative" in title


def test_an_old_file_without_delay_fields_still_plots_and_shows(tmp_path, capsys):
    old = EXAMPLES / "lab-demo.npz"  # written before the delay fields existed
    meta, rows = results.load(old)
    assert not any("owd_p50_us" in r for r in rows)
    fig = plot.figure(meta, rows)
    assert list(panels(fig)) == ["goodput", "loss 127.0.0.1", "loss 198.18.1.2", "jitter"]
    assert legend_texts(panels(fig)["jitter"]) == ["jitter (RFC 3550)", "delay spread\n(max - min one-way)"]
    assert panels(fig)["goodput"].get_ylabel() == "goodput (Mbit/s)"  # a 100 Mbit/s lab
    assert cli.main(["plot", str(old), "-o", str(tmp_path / "old.png")]) == 0
    assert cli.main(["show", str(old)]) == 0
    out = capsys.readouterr().out
    assert "198.18.1.2" in out and "one-way delay" not in out


def test_a_real_auto_sweep_across_the_engine_switch(tmp_path, capsys):
    saved = sweep(["127.0.0.1"], sizes=[1472, 40000], duration=0.2, rate=200e6, port=1,
                  output=tmp_path / "auto").path
    meta, rows = results.load(saved)
    assert [r["engine"] for r in rows] == ["gso", "mmsg"]  # the premise: auto switched engine
    fig = plot.figure(meta, rows)
    texts = legend_texts(panels(fig)["goodput"])
    assert texts[1:] == ["engine gso", "engine mmsg"] and texts[0].startswith("127.0.0.1")
    ax = panels(fig)["goodput"]
    assert ax.get_ylabel() == "goodput (Mbit/s)"  # paced at 200 Mbit/s
    assert "same-host" in panels(fig)["one-way delay"].get_title(loc="left")
    assert cli.main(["show", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "sched p99" in out and out.count("same-host") == 2


def test_the_image_is_as_readable_as_any_file_the_user_writes(tmp_path):
    import os

    mask = os.umask(0o027)
    try:
        out = plot.render(LOOPBACK, auto_loopback_rows(), tmp_path / "mode.png")
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o640  # 0666 less the umask, not mkstemp's 0600
