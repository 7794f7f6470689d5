"""Files a user names that are not what they claim: devices, FIFOs, crafted result files, token
files without end. Each is refused in one line with exit 2, quickly, and without reading without
bound (issue 11, section 2).

The cases that hung or ate memory before the fix run in a child process with a timeout and an
address-space limit, so that a regression fails instead of taking the machine down.
"""
from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from udpbench import cli
from udpbench.output import results
from udpbench.protocol import control

META = {"schema": results.SCHEMA, "schema_version": 1, "hosts": [{"host": "127.0.0.1", "path_mtu": 65536}]}
ROW = {"host": "127.0.0.1", "size": 1472, "engine": "mmsg", "sent": 10, "received": 9}


def _limited():
    limit = 2 << 30  # 2 GiB of address space: enough to import numpy, far from "until memory runs out"
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def udpbench_process(*args, timeout: float = 60.0) -> tuple[int, str]:
    """Run ``python -m udpbench ARGS`` in a child with bounded memory; (exit status, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cli.__file__)))
    env.pop(control.TOKEN_ENV, None)
    try:
        proc = subprocess.run([sys.executable, "-m", "udpbench", *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env=env, preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        pytest.fail(f"udpbench {' '.join(map(str, args))} still ran after {timeout:g} s")
    return proc.returncode, proc.stderr


def assert_one_line(code: int, err: str, needle: str, status: int = 2) -> None:
    assert code == status, err
    assert err.count("\n") == 1 and err.startswith("udpbench: ") and "Traceback" not in err, err
    assert needle in err, err


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "results.json"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["show", "plot"])
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_show_and_plot_refuse_a_device(command, device):
    assert_one_line(*udpbench_process(command, device, timeout=30), needle="not a regular file")


@pytest.mark.parametrize("command", ["show", "plot"])
def test_show_and_plot_refuse_a_fifo_without_waiting_for_a_writer(command, fifo):
    assert_one_line(*udpbench_process(command, fifo, timeout=30), needle="not a regular file")


@pytest.mark.parametrize("device", ["/dev/zero", "fifo"])
def test_token_file_must_be_a_regular_file(device, fifo):
    path = fifo if device == "fifo" else device
    # refused while reading the options: the port is never contacted
    code, err = udpbench_process("blast", "127.0.0.1", "--port", "9", "--token-file", path, timeout=30)
    assert_one_line(code, err, needle="token file")
    assert "not a regular file" in err


def test_token_file_line_length_is_capped(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"a" * (control.MAX_TOKEN_BYTES + 1))
    code, err = udpbench_process("blast", "127.0.0.1", "--port", "9", "--token-file", path, timeout=30)
    assert_one_line(code, err, needle=f"longer than {control.MAX_TOKEN_BYTES} bytes")
    # a token of exactly the limit, followed by more lines, is read: only its first line counts
    path.write_bytes(b"b" * control.MAX_TOKEN_BYTES + b"\nsecond line\n")
    assert control.resolve_token(token_file=str(path)) == "b" * control.MAX_TOKEN_BYTES


def _npy_header(descr: str, shape: tuple) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def _npz_with(path, member: str, header: bytes, data: bytes = b"") -> None:
    """A result file whose ``member`` array is a hand-made npy header and ``data``."""
    meta = io.BytesIO()
    np.lib.format.write_array(meta, np.array(json.dumps(dict(META, rows=1))))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.npy", meta.getvalue())
        z.writestr(member, header + data)


@pytest.mark.parametrize("descr, shape, data, needle", [
    ("<f8", (2**40,), b"", "claims 1099511627776 rows"),       # 8 TiB of float64
    ("<U100000000", (1,), b"", "claims 400000000 bytes"),      # one 400 MB string
    ("<f8", (1,), b"\0" * 8 * 1000, "holds 8000"),             # more data than the shape: not ours
    ("<f8", (1, 1), b"\0" * 8, "shape (1, 1)"),
    ("<c16", (1,), b"\0" * 16, "complex128"),
], ids=["8TiB", "400MB-string", "extra-data", "2-D", "complex"])
def test_npy_headers_are_checked_before_numpy_allocates(tmp_path, descr, shape, data, needle):
    path = tmp_path / "crafted.npz"
    _npz_with(path, "sent.npy", _npy_header(descr, shape), data)
    assert path.stat().st_size < 10_000
    assert_one_line(*udpbench_process("show", path, timeout=30), needle=needle)


def _write_json(path, rows):
    path.write_text(json.dumps({"meta": dict(META, rows=len(rows)), "rows": rows}))
    return path


@pytest.mark.parametrize("field, value, words", [
    ("jitter_ms", None, "'jitter_ms' is not a number"),
    ("sent", 1e400, "'sent' is not a whole number"),          # JSON's 1e400 is infinity
    ("sent", 2**64, "'sent' is not a whole number of at most 64 bits"),
    ("size", 10**300, "'size' is not a whole number"),
    ("host", {"a": 1}, "'host' is not text"),
], ids=["null", "1e400", "2**64", "10**300", "record"])
def test_each_column_type_is_checked_and_named(tmp_path, capsys, field, value, words):
    path = _write_json(tmp_path / "typed.json", [ROW, dict(ROW, **{field: value})])
    for command in ("show", "plot"):
        code = cli.main([command, str(path)])
        err = capsys.readouterr().err
        assert_one_line(code, err, needle=f"row 2 field {words}")


def test_five_million_rows_are_refused_at_once(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"meta": %s, "rows": [%s]}' % (json.dumps(META), ",".join(["{}"] * 5_000_000)))
    assert 10e6 < path.stat().st_size < 20e6  # the 15 MB of the report
    started = time.monotonic()
    code, err = udpbench_process("show", path, timeout=60)  # before: over 60 s, and then a table
    assert_one_line(code, err, needle=f"holds 5000000 rows, more than the {results.MAX_ROWS}")
    assert time.monotonic() - started < 30


def test_an_npz_whose_meta_claims_too_many_rows_is_refused(tmp_path, capsys):
    path = tmp_path / "many.npz"
    arrays = results.to_arrays(META, [ROW])
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps(dict(meta, rows=results.MAX_ROWS + 1)))
    np.savez(path, **arrays)
    code = cli.main(["show", str(path)])
    assert_one_line(code, capsys.readouterr().err, needle=f"at most {results.MAX_ROWS}")


def test_a_json_larger_than_the_cap_is_refused_before_parsing(tmp_path, monkeypatch, capsys):
    path = _write_json(tmp_path / "big.json", [ROW] * 50)
    monkeypatch.setattr(results, "MAX_JSON_BYTES", path.stat().st_size - 1)
    code = cli.main(["show", str(path)])
    assert_one_line(code, capsys.readouterr().err, needle="is larger than")
    monkeypatch.setattr(results, "MAX_JSON_BYTES", path.stat().st_size)
    assert cli.main(["show", str(path)]) == 0
