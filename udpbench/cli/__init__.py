"""The command line: argparse and printing only. ``main(argv) -> int``."""
from udpbench.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
