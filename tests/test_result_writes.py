"""Result files that cannot be written: refused before measuring, or one line mid-sweep with
every measured row kept (issue 11, section 2). Root only: the full and read-only filesystems
are small tmpfs mounts made and removed here."""
from __future__ import annotations

import os
import select
import socket
import subprocess
import tempfile

import pytest

from udpbench import cli
from udpbench.errors import UserError
from udpbench.measure import sweep as sweep_module
from udpbench.measure.sweep import ResultsNotSaved, sweep
from udpbench.output import results
from udpbench.transport.server import Server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def mount_tmpfs(tmp_path):
    mounted = []

    def mount(name: str, *options: str):
        where = tmp_path / name
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=1m", *options)), "tmpfs", str(where)],
                       check=True)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def server():
    with Server("127.0.0.1", 0) as s:
        yield s


@pytest.fixture
def idle_listener():
    """A TCP port nothing answers on: if a sweep connected to it, the connection would be pending."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def nobody_connected(listener) -> bool:
    return not select.select([listener], [], [], 0.2)[0]


def sweep_cli(port: int, output, capsys, *extra) -> tuple[int, str, str]:
    code = cli.main(["sweep", "127.0.0.1", "--port", str(port), "--sizes", "100,200,300", "--duration", "0.05",
                     "--rate", "1M", "-o", str(output), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, needle: str) -> None:
    assert err.count("\n") == 1 and err.startswith("udpbench: ") and "Traceback" not in err, err
    assert needle in err, err


def test_a_read_only_filesystem_is_refused_before_measuring(mount_tmpfs, idle_listener, capsys):
    read_only = mount_tmpfs("ro", "ro")
    code, _, err = sweep_cli(idle_listener.getsockname()[1], read_only / "run", capsys)
    assert code == 2
    assert_one_line(err, f"cannot write results in {read_only}: Read-only file system")
    assert nobody_connected(idle_listener)


@pytest.mark.parametrize("name, words", [
    ("", "names no file"),
    ("/dev/null/x", "/dev/null: it is not a directory"),
    ("/dev/null/x/y", "/dev/null/x: Not a directory"),
    ("adir", "adir.npz: it is a directory"),
])
def test_unwritable_names_are_refused_before_measuring(tmp_path, monkeypatch, idle_listener, capsys, name, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir.npz").mkdir()
    code, _, err = sweep_cli(idle_listener.getsockname()[1], name, capsys)
    assert code == 2
    assert_one_line(err, words)
    assert nobody_connected(idle_listener)
    with pytest.raises(UserError, match=words):  # the library refuses the same, naming the path
        sweep("127.0.0.1", port=idle_listener.getsockname()[1], output=name)


def _fill_after_first_save(monkeypatch, disk):
    """Let the first save through, then fill the disk, so the next save meets a real ENOSPC."""
    real_save = results.save

    def save(*args, **kwargs):
        written = real_save(*args, **kwargs)
        if not (disk / "filler").exists():
            with open(disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
        return written

    monkeypatch.setattr(sweep_module.results, "save", save)


def test_a_full_disk_mid_sweep_keeps_the_file_and_every_row(mount_tmpfs, monkeypatch, server, capsys, tmp_path):
    disk = mount_tmpfs("full")
    rescue_dir = tmp_path / "rescue"
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    _fill_after_first_save(monkeypatch, disk)
    code, out, err = sweep_cli(server.port, disk / "run", capsys)
    assert code == 1
    assert_one_line(err, f"cannot write {disk / 'run.npz'}: No space left on device (ENOSPC); "
                         f"{disk / 'run.npz'} still holds the 1 row(s) saved before; all 2 measured row(s) are in")
    _, kept = results.load(disk / "run.npz")  # the previous file is intact and loads
    assert [r["size"] for r in kept] == [100]
    rescued = list(rescue_dir.glob("udpbench-unsaved-*.npz"))
    assert len(rescued) == 1 and str(rescued[0]) in err
    _, rows = results.load(rescued[0])
    assert [r["size"] for r in rows] == [100, 200]
    assert "rows measured before the result files failed" in out
    assert not list(disk.glob(".run*.tmp"))  # no half-written temporary file left behind


def test_the_library_says_which_rows_a_failed_write_kept(mount_tmpfs, monkeypatch, server):
    disk = mount_tmpfs("lib")
    _fill_after_first_save(monkeypatch, disk)
    with pytest.raises(ResultsNotSaved) as caught:
        sweep("127.0.0.1", port=server.port, sizes=[100, 200, 300], duration=0.05, rate=1e6, output=disk / "run")
    failed = caught.value
    assert failed.saved == disk / "run.npz" and failed.saved_rows == 1
    assert [r.size for r in failed.rows] == [100, 200]
