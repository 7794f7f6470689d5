"""The saving side of result files: a schema named by the caller, and writes that leave either
the old file or the new one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from udpbench.output import results


def test_a_schema_given_is_the_one_both_files_name(tmp_path):
    npz, js = results.save(tmp_path / "r", {"hosts": []}, [{"size": 64, "sent": 3}],
                           schema="udpbench.example", schema_version=7)
    with np.load(npz, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert data["sent"].tolist() == [3]
    assert (meta["schema"], meta["schema_version"], meta["rows"]) == ("udpbench.example", 7, 1)
    assert json.loads(js.read_text())["meta"] == meta
    # A file of another schema is not a sweep's: loading it as one is refused.
    with pytest.raises(results.UserError, match="udpbench.sweep"):
        results.load(js)


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "kept.bin"
    results.write_atomically(path, lambda f: f.write(b"old"))

    def half_then_fail(f):
        f.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        results.write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin"]
