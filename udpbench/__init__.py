"""udpbench: measure what a network path does to UDP datagrams."""
__version__ = "0.1.0"

try:
    from . import _fast  # noqa: F401  (the compiled core: fail early, and say how to build it)
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "udpbench's compiled core (udpbench._fast) is missing: install with `pip install .` "
        "(needs a C compiler and the Python headers), or build in place with "
        "`python setup.py build_ext --inplace`"
    ) from exc
