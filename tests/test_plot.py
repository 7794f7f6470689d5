"""`udpbench plot` and `sweep --plot`: real images from real and hand-built result files."""
import signal
import subprocess
import sys
import time

import pytest

from udpbench import cli
from udpbench.protocol import frag
from udpbench.output import plot, plot_axes, plot_series
from udpbench.output import results
from udpbench.measure.sweep import sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "udpbench", *argv], capture_output=True, text=True,
                          timeout=timeout)


def assert_png(path, min_bytes=20_000):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes  # three panels of lines and text, not an empty canvas
    pixels = matplotlib.image.imread(str(path))
    height, width = pixels.shape[:2]
    assert 900 <= width <= 1600 and 600 <= height <= 2000
    assert pixels.std() > 0.05  # something drawn on the white
    return pixels


def two_host_rows(causes=True):
    """A loopback host that loses nothing and a 1500-MTU host whose loss grows with fragments."""
    sizes = frag.plan_sizes(1500, budget=16)
    rows = []
    for host, mtu in (("127.0.0.1", 65536), ("198.18.1.2", 1500)):
        for size in sizes:
            k = frag.fragments(size, mtu)
            sent = 10_000
            lost = 0 if mtu > 9000 else 20 * k
            row = {"host": host, "family": 4, "size": size, "engine": "send", "sent": sent,
                   "received": sent - lost, "lost": lost, "loss_ratio": lost / sent,
                   "goodput_bps": (sent - lost) * size * 8.0, "jitter_ms": 0.01 * k,
                   "delay_spread_ms": 0.1 * k, "fragments": k, "path_mtu": mtu, "duration_s": 1.0}
            if causes:
                row.update(loss_sender=0, loss_socket=lost // 4, loss_reassembly=lost // 2,
                           loss_network=lost - lost // 4 - lost // 2)
            rows.append(row)
    meta = {"command": "udpbench sweep 127.0.0.1 198.18.1.2", "started": "2026-11-23T05:30:00+0000",
            "hosts": [{"host": "127.0.0.1", "path_mtu": 65536, "family": 4},
                      {"host": "198.18.1.2", "path_mtu": 1500, "family": 4}]}
    return meta, rows


def test_plot_of_a_real_loopback_sweep(tmp_path, capsys):
    saved = sweep(["127.0.0.1"], sizes=[64, 1472, 1473, 9000], duration=0.1, rate=20e6, engine="send",
                  port=1, output=tmp_path / "loop").path
    assert cli.main(["plot", str(saved)]) == 0
    out = saved.with_suffix(".png")
    assert f"wrote {out}" in capsys.readouterr().err
    assert_png(out)


@pytest.mark.parametrize("causes", [True, False])
def test_plot_of_two_hosts_with_and_without_loss_causes(tmp_path, causes):
    meta, rows = two_host_rows(causes)
    npz, js = results.save(tmp_path / "two", meta, rows)
    out = tmp_path / "figures" / "two.png"  # a directory that does not exist yet
    assert cli.main(["plot", str(js), "-o", str(out)]) == 0
    pixels = assert_png(out)
    # the causes give each host its own loss panel: a taller figure
    assert (pixels.shape[0] > 1050) == causes


def test_two_hosts_have_their_boundaries(tmp_path):
    meta, rows = two_host_rows()
    series = plot.series_of(meta, rows)
    assert [s.label for s in series] == ["127.0.0.1 (MTU 65536)", "198.18.1.2 (MTU 1500, P 1472)"]
    loopback, lan = series
    assert loopback.path_mtu_boundary() is None and loopback.fragment_boundaries() == []
    assert lan.path_mtu_boundary() == 1472.5
    boundaries = lan.fragment_boundaries()
    assert boundaries[0] == (1472.5, 2) and (2952.5, 3) in boundaries
    sizes = lan.sizes
    for x, k in boundaries:  # each lies between a measured pair whose counts differ by one
        below = max(s for s in sizes if s < x)
        above = min(s for s in sizes if s > x)
        assert frag.fragments(below, 1500) == k - 1 and frag.fragments(above, 1500) == k


def test_fragment_boundaries_without_a_fragments_column_come_from_the_path_mtu():
    meta, rows = two_host_rows()
    for row in rows:
        del row["fragments"]
    lan = plot.series_of(meta, rows)[1]
    assert lan.fragment_boundaries()[0] == (1472.5, 2)


def test_boundaries_where_a_router_fragments_again():
    # The sender fragments at its 1500 MTU, the router again at the 1400 path MTU: the count
    # rises to 2 past P = 1372, and to 3 past 1472, where the sender's own fragmentation starts.
    sizes = [64, 1372, 1373, 2000, 2748]
    rows = [{"host": "h", "size": x, "sender_mtu": 1500,
             "fragments": len(frag.fragment_sizes_on_path(x, 1500, 1400))} for x in sizes]
    series = plot.series_of({"hosts": [{"host": "h", "path_mtu": 1400, "family": 4}]}, rows)[0]
    assert series.path_mtu_boundary() == 1372.5
    assert series.fragment_boundaries() == [(1372.5, 2), (1472.5, 3)]


def test_a_path_mtu_learned_during_the_sweep_moves_p():
    # The sweep started believing 1500; an ICMP "fragmentation needed" taught the sender 1400.
    rows = [{"host": "h", "size": x, "path_mtu": 1500, "sender_mtu": m,
             "fragments": len(frag.fragment_sizes_on_path(x, m, 1500))}
            for x, m in ((64, 1500), (1471, 1500), (1472, 1400), (2748, 1400), (2749, 1400))]
    series = plot.series_of({"hosts": [{"host": "h", "path_mtu": 1500, "family": 4}]}, rows)[0]
    assert series.label == "h (MTU 1500\u21921400, P 1372)"
    assert series.path_mtu_boundary() == 1372.5
    # 1471 -> 1472 is where the count rose as measured; 2748 -> 2749 at 1400 exactly
    assert series.fragment_boundaries() == [(1471.5, 2), (2748.5, 3)]


def test_plot_of_rows_missing_optional_columns(tmp_path):
    meta = {"hosts": [{"host": "::1", "path_mtu": 1500, "family": 6}]}
    rows = [{"host": "::1", "size": s, "sent": 100, "received": 100 - i, "lost": i, "duration_s": 0.5}
            for i, s in enumerate([100, 1452, 1453, 3000])]  # no goodput, loss_ratio, jitter, fragments
    npz, _ = results.save(tmp_path / "bare", meta, rows)
    out = plot.plot_file(npz)
    assert out == tmp_path / "bare.png"
    assert_png(out, min_bytes=10_000)
    lan = plot.series_of(meta, rows)[0]
    assert lan.path_mtu_boundary() == 1452.5  # IPv6: 1500 - 48
    assert lan.column(plot_series.goodput_bps)[1][0] == pytest.approx(100 * 100 * 8 / 0.5)


def test_latency_of_a_row_with_nothing_received_is_left_out_not_drawn_as_zero():
    meta, rows = two_host_rows()
    lan = [r for r in rows if r["host"] == "198.18.1.2"]
    lan[-1].update(received=0, lost=lan[-1]["sent"], loss_ratio=1.0, goodput_bps=0.0, jitter_ms=0.0)
    series = plot.series_of(meta, rows)[1]
    sizes, jitter = series.column(lambda r: plot_series.spread(r, "jitter_ms"))
    assert lan[-1]["size"] not in sizes and len(sizes) == len(series.sizes) - 1
    sizes, goodput = series.column(plot_series.goodput_bps)
    assert sizes[-1] == lan[-1]["size"] and goodput[-1] == 0.0  # goodput 0 is a measurement


@pytest.mark.parametrize("content, words", [
    (None, "no result file"),
    (b"this is not numpy", "not a udpbench result file"),
    (b'{"meta": {"schema": "something.else"}, "rows": []}', "not a udpbench result file"),
])
def test_bad_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / ("bad.json" if content and content.startswith(b"{") else "bad.npz")
    if content is not None:
        path.write_bytes(content)
    done = run_cli("plot", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert not path.with_suffix(".png").exists()


def test_empty_file_and_bad_image_name_are_user_errors(tmp_path, capsys):
    npz, _ = results.save(tmp_path / "empty", {"hosts": []}, [])
    assert cli.main(["plot", str(npz)]) == 2
    assert "no rows to plot" in capsys.readouterr().err
    meta, rows = two_host_rows()
    npz, _ = results.save(tmp_path / "two", meta, rows)
    assert cli.main(["plot", str(npz), "-o", str(tmp_path / "two.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err


def test_sweep_plot_writes_the_image_after_the_sweep(tmp_path, capsys, free_port):
    image = tmp_path / "sweep.png"
    code = cli.main(["sweep", "127.0.0.1", "--port", str(free_port), "--sizes", "64,1500", "--duration", "0.1", "--rate", "10M",
                     "--json", "-o", str(tmp_path / "s"), "--plot", str(image)])
    assert code == 0
    assert f"wrote {image}" in capsys.readouterr().err
    assert_png(image)


def test_sweep_plot_refuses_a_bad_image_name_before_measuring(tmp_path, capsys):
    code = cli.main(["sweep", "127.0.0.1", "--sizes", "64", "-o", str(tmp_path / "s"),
                     "--plot", str(tmp_path / "s.gif")])
    assert code == 2
    assert not (tmp_path / "s.npz").exists()


def test_interrupted_sweep_plots_its_finished_rows(tmp_path, free_port):
    base, image = tmp_path / "part", tmp_path / "part.png"
    proc = subprocess.Popen([sys.executable, "-m", "udpbench", "sweep", "127.0.0.1", "--port", str(free_port), "--sizes",
                             "64,200,400,800,1600,3200,6400", "--duration", "0.4", "--rate", "5M",
                             "-o", str(base), "--plot", str(image)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        npz = base.with_suffix(".npz")
        while not (npz.exists() and results.load(npz)[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert npz.exists(), "no row was saved"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and f"wrote {image}" in err
    rows = results.load(base.with_suffix(".npz"))[1]
    assert 1 <= len(rows) < 7
    assert_png(image, min_bytes=10_000)


def test_loss_layers_split_the_drawn_height_in_proportion_to_the_causes():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    ax.set_yscale("symlog", linthresh=0.01, linscale=0.5)
    total = [10.0, 0.0, 1.0]
    parts = [[1.0, 0.0, 0.0], [3.0, 0.0, 5.0]]  # network 1 and socket 3 of 4 lost; then none; then all socket
    (n0, n1), (s0, s1) = plot_axes.stack_in_display(ax, [100, 200, 300], total, parts)
    scale = ax.yaxis.get_transform()

    def height(a, b):
        return scale.transform([b])[0] - scale.transform([a])[0]

    assert n0[0] == 0 and n1[0] == pytest.approx(s0[0]) and s1[0] == pytest.approx(10.0)
    assert height(s0[0], s1[0]) == pytest.approx(3 * height(n0[0], n1[0]))  # 3:1 on the page
    assert n1[1] == s1[1] == 0.0  # nothing lost: nothing drawn
    assert n1[2] == 0.0 and s1[2] == pytest.approx(1.0)
