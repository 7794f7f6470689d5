"""The package face: every entry of ``udpbench.__all__`` is there, documented in its own words,
and listed by ``help(udpbench)``; importing the face loads neither the compiled core nor Dask."""
from __future__ import annotations

import subprocess
import sys

import udpbench

ENTRIES = [name for name in udpbench.__all__ if name != "__version__"]


def test_every_entry_has_a_docstring_of_its_own():
    for name in ENTRIES:
        value = getattr(udpbench, name)
        doc = value.__doc__ or ""
        # a dataclass without a docstring gets its signature as one: "MeshResult(meta: dict, ...)"
        assert doc.strip() and not doc.startswith(f"{value.__name__}("), name


def test_the_measurements_are_on_the_face():
    for name in ("blast", "sweep", "path_mtu", "ping", "find_servers", "capacity", "mesh"):
        assert callable(getattr(udpbench, name)), name
    assert udpbench.capacity.__module__ == "udpbench.measure.capacity"


def test_help_lists_every_entry_and_import_loads_no_core():
    code = ("import sys, pydoc, udpbench\n"
            "loaded = [m for m in ('udpbench.engine._fast', 'distributed', 'udpbench.measure.capacity')"
            " if m in sys.modules]\n"
            "print(loaded)\n"
            "print(pydoc.render_doc(udpbench, renderer=pydoc.plaintext))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, _, text = done.stdout.partition("\n")
    assert first == "[]"
    for name in ENTRIES:
        # a class is listed as "class NAME(", a function as "NAME(" or "NAME = target(" (an alias)
        assert f"class {name}(" in text or f"\n    {name}(" in text or f"\n    {name} = " in text, name
