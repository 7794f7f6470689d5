"""The result-file schema: NAME.npz (numpy arrays, one entry per row) and NAME.json (the same, readable).

Both are written atomically (a temporary file, then rename), after every finished row, so an
interrupted sweep keeps what it measured. Loading never unpickles.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from udpbench.errors import UserError
from udpbench.files import open_regular
from udpbench.protocol.row import Row

SCHEMA = "udpbench.sweep"
SCHEMA_VERSION = 1


def _column(values: list):
    """A 1-D array for one column, and whether it holds JSON-encoded values."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.array([bool(v) for v in values]), False
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return np.array([v if v is not None else 0 for v in values], dtype=np.int64), False
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([v if v is not None else np.nan for v in values], dtype=np.float64), False
    if present and all(isinstance(v, str) for v in present):
        return np.array([v if v is not None else "" for v in values], dtype=np.str_), False
    return np.array([json.dumps(v, sort_keys=True) for v in values], dtype=np.str_), True


def public(row: Row | dict) -> dict:
    """A row as the files hold it: a Row's public fields, or a dict without private ('_') keys."""
    if isinstance(row, Row):
        return row.as_dict()
    return {k: v for k, v in row.items() if not k.startswith("_")}


def to_arrays(meta: dict, rows: list[Row | dict], schema: str = SCHEMA,
              schema_version: int = SCHEMA_VERSION) -> dict[str, np.ndarray]:
    rows = [public(row) for row in rows]
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in public(row) if k not in keys)
    arrays, json_columns = {}, []
    for key in keys:
        arrays[key], encoded = _column([row.get(key) for row in rows])
        if encoded:
            json_columns.append(key)
    meta = dict(meta, schema=schema, schema_version=schema_version, rows=len(rows), json_columns=json_columns)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def write_atomically(path: Path, write) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it over ``path``:
    a reader sees the old file or the new one, never half of one. OSError as the system gave it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def paths(base: str | Path) -> tuple[Path, Path]:
    """(BASE.npz, BASE.json): the files ``save(base, ...)`` writes."""
    base = Path(base)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def check_writable(base: str | Path) -> tuple[Path, Path]:
    """Refuse, before anything is measured, a result-file name that cannot be written: an empty
    name, a directory where a file goes, a parent that is a file, a read-only or full filesystem.
    Creates the parent directory; returns the two paths. A UserError names the path and why."""
    if not str(base).strip() or Path(base).name in ("", ".", ".."):
        raise UserError(f"result file name {str(base)!r} names no file")
    npz, js = paths(base)
    for path in (npz, js):
        if path.is_dir():
            raise UserError(f"cannot write results to {path}: it is a directory")
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        # Write a byte, not just check permissions: root passes every permission check, and a
        # read-only or full filesystem only shows itself on a write.
        with tempfile.NamedTemporaryFile(dir=npz.parent, prefix=f".{npz.name}.", suffix=".probe") as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
    except FileExistsError:  # mkdir: the parent is there, but as a file
        raise UserError(f"cannot write results in {npz.parent}: it is not a directory") from None
    except OSError as exc:
        raise UserError(f"cannot write results in {npz.parent}: {exc.strerror or exc}") from None
    return npz, js


def save(base: str | Path, meta: dict, rows: list[Row | dict], schema: str = SCHEMA,
         schema_version: int = SCHEMA_VERSION) -> tuple[Path, Path]:
    """Write BASE.npz and BASE.json atomically; returns both paths. ``schema`` names the kind of
    result in ``meta`` (a sweep's by default), so that one kind is never read as another."""
    npz, js = paths(base)
    arrays = to_arrays(meta, rows, schema, schema_version)
    write_atomically(npz, lambda f: np.savez(f, **arrays))
    document = {"meta": json.loads(str(arrays["meta"])), "rows": [public(r) for r in rows]}
    write_atomically(js, lambda f: f.write(json.dumps(document, indent=1, default=str).encode() + b"\n"))
    return npz, js


# Result files are small (a 1000-row sweep is well under a megabyte); a member that claims
# more is not ours, and reading it could exhaust memory (a zip bomb).
MAX_MEMBER_BYTES = 256 << 20
MAX_JSON_BYTES = 128 << 20
# Checking and printing a row takes about 50 us; 20,000 rows (a 1000-point sweep of 20 hosts)
# load in a second, while 5 million would take minutes (docs/decisions.md, "Hardening").
MAX_ROWS = 20_000
# numpy dtype kinds a result column may have: bool, int, unsigned, float, text. Never objects.
_COLUMN_KINDS = "biufU"
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError,
               RecursionError, NotImplementedError, MemoryError, struct.error, zlib.error,
               zipfile.BadZipFile)


def load(path: str | Path) -> tuple[dict, list[dict]]:
    """(meta, rows) from a .npz or .json result file; a clear UserError for anything else.

    Each row is the file's record as it stands, checked field by field against ``Row``
    (``load_rows`` gives them as Rows). Never unpickles: an .npz holding an object array is
    refused, not loaded. Only a regular file is read (not a device, FIFO or directory), and
    nothing is allocated before its size is checked against what the file holds.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no result file {path}")
    with open_regular(path, "result file") as f:
        if path.suffix == ".json":
            meta, rows = _load_json(path, f)
        else:
            meta, rows = _load_npz(path, f)
    _check_rows(path, rows)
    return meta, rows


def _load_json(path: Path, f) -> tuple[dict, list[dict]]:
    try:
        text = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if len(text) > MAX_JSON_BYTES:
        raise UserError(f"{path} is larger than {MAX_JSON_BYTES >> 20} MiB: not a udpbench result file")
    try:
        document = json.loads(text.decode("utf-8"))
        meta, rows = document["meta"], document["rows"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, MemoryError):
        raise UserError(f"{path} is not a udpbench result file (bad or truncated JSON)") from None
    _check_meta(path, meta)
    if isinstance(rows, list) and len(rows) > MAX_ROWS:
        raise UserError(f"{path} holds {len(rows)} rows, more than the {MAX_ROWS} udpbench reads")
    return meta, rows


def _check_members(path: Path, archive: zipfile.ZipFile) -> None:
    """Read each array's npy header and refuse, before numpy allocates anything, an array that
    is not a 1-D column of bools, numbers or text (meta: one text value), or that claims more
    data than its member holds (the header's shape is what numpy would allocate)."""
    infos = archive.infolist()
    if sum(info.file_size for info in infos) > MAX_MEMBER_BYTES:
        raise UserError(f"{path} is not a udpbench result file (its arrays claim more than "
                        f"{MAX_MEMBER_BYTES >> 20} MiB)")
    for info in infos:
        name = info.filename.removesuffix(".npy")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise UserError(f"{path}: array {name!r} has npy format {version}, not 1.0 or 2.0")
            data_bytes = info.file_size - member.tell()
        if dtype.hasobject:
            raise UserError(f"{path} holds a pickled (object) array: refused, udpbench never "
                            f"unpickles a file")
        if dtype.kind not in _COLUMN_KINDS:
            raise UserError(f"{path}: array {name!r} holds {dtype} values, not bools, numbers or text")
        if len(shape) > 1 or (name == "meta") != (len(shape) == 0):
            raise UserError(f"{path}: array {name!r} has shape {shape}, not one entry per row")
        count = shape[0] if shape else 1
        if count > MAX_ROWS:
            raise UserError(f"{path}: array {name!r} claims {count} rows, more than the {MAX_ROWS} udpbench reads")
        if count * dtype.itemsize != data_bytes:
            raise UserError(f"{path}: array {name!r} claims {count * dtype.itemsize} bytes of data "
                            f"but holds {data_bytes}: not a udpbench result file")


def _load_npz(path: Path, f) -> tuple[dict, list[dict]]:
    try:
        with zipfile.ZipFile(f) as archive:
            _check_members(path, archive)
        f.seek(0)
        with np.load(f, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise UserError(f"{path} is not a udpbench result file (no 'meta' array)")
            meta = json.loads(str(data["meta"]))
            _check_meta(path, meta)
            columns = {k: data[k] for k in data.files if k != "meta"}
    except UserError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(f"{path} holds a pickled (object) array: refused, udpbench never "
                            f"unpickles a file") from None
        raise UserError(f"{path} is not a udpbench result file (unreadable, truncated or foreign)") from None
    except _UNREADABLE:
        raise UserError(f"{path} is not a udpbench result file (unreadable, truncated or foreign)") from None
    count = meta.get("rows", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_ROWS:
        raise UserError(f"{path}: meta 'rows' is not a row count of at most {MAX_ROWS}")
    encoded = meta.get("json_columns", [])
    if not isinstance(encoded, list):
        raise UserError(f"{path}: meta 'json_columns' is not a list")
    encoded = set(map(str, encoded))
    for key, column in columns.items():  # check before building rows: 'rows' may be a lie
        if column.shape != (count,):
            raise UserError(f"{path}: column {key!r} does not have one entry per row")
    rows = [{} for _ in range(count)]
    for key, column in columns.items():
        for row, value in zip(rows, column.tolist()):
            if key in encoded:
                try:
                    value = json.loads(value)
                except (TypeError, ValueError, RecursionError):
                    raise UserError(f"{path}: column {key!r} holds a value that is not JSON") from None
            row[key] = value
    return meta, rows


def load_rows(path: str | Path) -> tuple[dict, list[Row]]:
    """(meta, rows) from a result file, each row a ``Row``."""
    meta, rows = load(path)
    return meta, [Row.from_dict(row) for row in rows]


def _check_rows(path: Path, rows) -> None:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path} is not a udpbench result file (rows are not a list of records)")
    for i, row in enumerate(rows):
        try:
            Row.from_dict(row)
        except ValueError as exc:
            raise UserError(f"{path}: row {i + 1} {exc}") from None


def _check_meta(path: Path, meta) -> None:
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise UserError(f"{path} is not a udpbench result file (no '{SCHEMA}' schema in meta)")
    hosts = meta.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, dict) and "host" in h and "path_mtu" in h
                                              for h in hosts):
        raise UserError(f"{path}: meta 'hosts' is not a list of hosts with their path MTU")
    version = meta.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{path}: meta 'schema_version' is not a whole number")
    if version > SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {version}; this udpbench reads "
                        f"up to {SCHEMA_VERSION}: upgrade udpbench")
