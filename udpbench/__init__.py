"""udpbench: measure what a network path does to UDP datagrams."""
__version__ = "0.1.0"
