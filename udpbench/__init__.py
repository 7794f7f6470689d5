"""udpbench: measure what a network path does to UDP datagrams."""
from udpbench._version import __version__

__all__ = ["__version__"]
