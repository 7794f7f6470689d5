"""`udpbench show`: the measurement table and the one-way delay percentiles of a saved file."""
import re

from udpbench import cli
from udpbench.output import results


def delay_row(host, size, received=100, basis="same-host", error=0.0):
    row = {"host": host, "size": size, "engine": "send", "sent": 100, "received": received,
           "lost": 100 - received, "loss_ratio": (100 - received) / 100, "owd_basis": basis,
           "clock_offset_us": 0.0, "clock_error_us": error}
    for prefix, extra in (("owd", 0.0), ("sched_owd", 200_000.0)):
        for part, value in (("min", 3.5), ("p50", 12.5), ("p90", 40.0), ("p99", 1234.0), ("p999", 2000.0),
                            ("max", 2500.0)):
            row[f"{prefix}_{part}_us"] = value + (extra if part in ("p99", "p999", "max") else 0.0)
    return row


def cells(out: str, host: str, size: int) -> list[str]:
    """The delay table's cells of one row (the line that has a basis column)."""
    for line in out.splitlines():
        parts = [p.strip() for p in line.split("\u2502")]
        if parts[:2] == [host, str(size)] and len(parts) == 16:
            return parts
    raise AssertionError(f"no delay row for {host} {size} in:\n{out}")


def test_show_prints_the_percentiles_of_both_bases(tmp_path, capsys):
    rows = [delay_row("127.0.0.1", 1472), delay_row("198.18.1.2", 1472, basis="estimated", error=12.0),
            delay_row("198.18.1.2", 9000, received=0),
            dict(delay_row("192.0.2.1", 64, basis="relative", error=-1.0),
                 owd_note="clock offset not measured: delays are relative to the smallest")]
    _, js = results.save(tmp_path / "d", {"hosts": []}, rows)
    assert cli.main(["show", str(js)]) == 0
    out = capsys.readouterr().out
    assert "one-way delay" in out
    header = [h.strip() for h in next(line for line in out.splitlines() if "sched p99.9" in line).split("\u2503")]
    assert header[4:] == ["min", "p50", "p90", "p99", "p99.9", "max",
                          "sched min", "sched p50", "sched p90", "sched p99", "sched p99.9", "sched max"]
    assert cells(out, "127.0.0.1", 1472)[3:] == ["same-host", "3.5", "12.5", "40.0", "1,234", "2,000", "2,500",
                                                  "3.5", "12.5", "40.0", "201,234", "202,000", "202,500"]
    assert cells(out, "198.18.1.2", 1472)[3] == "estimated \u00b112.0"
    assert set(cells(out, "198.18.1.2", 9000)[3:]) == {"-"}  # nothing received: no delay, not 0
    assert cells(out, "192.0.2.1", 64)[3] == "relative"
    assert out.count("note: clock offset not measured: delays are relative to the smallest") == 1


def test_show_of_a_file_without_delay_fields_prints_the_table_only(tmp_path, capsys):
    _, js = results.save(tmp_path / "old", {"hosts": [{"host": "h", "path_mtu": 1500}]},
                         [{"host": "h", "size": 64, "sent": 10, "received": 10}])
    assert cli.main(["show", str(js)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"h\s+\u2502\s+64", out) and "one-way delay" not in out
