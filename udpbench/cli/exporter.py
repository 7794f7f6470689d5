"""`udpbench exporter`: a Prometheus probe endpoint in the style of blackbox_exporter."""
from __future__ import annotations

import logging
import sys

from udpbench.cli import options
from udpbench.errors import UserError


def add_parser(commands) -> None:
    p = commands.add_parser(
        "exporter", help="serve /probe?target=&module= for Prometheus (multi-target exporter)",
        description="Measure allowed targets when Prometheus scrapes /probe?target=HOST[:PORT]&module=NAME; "
                    "/metrics is the exporter's own health. See docs/exporter.md.")
    p.add_argument("--listen", default="127.0.0.1:9717", metavar="HOST:PORT",
                   help="where to serve HTTP (default 127.0.0.1:9717)")
    p.add_argument("--allow", action="append", required=True, metavar="CIDR|HOST[,...]",
                   help="networks and host names that may be probed (required; repeat or separate with commas)")
    p.add_argument("--config", metavar="FILE", help="YAML file of modules and limits (default: built-in modules)")
    options.add_token_file(p, help="the token for servers that require one (or set UDPBENCH_TOKEN); never in a URL")
    p.add_argument("-v", "--verbose", action="store_true", help="log every probe, not only failures")
    p.set_defaults(func=run)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all IPv4 interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--listen {text!r}: expected HOST:PORT, like 127.0.0.1:9717")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def run(args) -> int:
    try:
        from udpbench.exporter.allow import AllowList
        from udpbench.exporter.config import load
        from udpbench.exporter.service import Exporter
    except ImportError as exc:
        raise UserError(f"the exporter needs {exc.name}: pip install 'udpbench[exporter]'") from None
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # a probe's registry is new every scrape: its _created says nothing
    host, port = listen_address(args.listen)
    config = load(args.config)
    allow = AllowList(args.allow)
    token = options.token_of(args) or None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="udpbench exporter: %(message)s")
    try:
        exporter = Exporter(config, allow, host, port, token=token)
    except OSError as exc:
        raise UserError(f"--listen {args.listen}: {exc.strerror}") from None
    where = f"[{exporter.host}]:{exporter.port}" if ":" in exporter.host else f"{exporter.host}:{exporter.port}"
    print(f"udpbench exporter on http://{where}/probe?target=HOST&module=NAME "
          f"(modules: {', '.join(sorted(config.modules))}); /metrics for its own health", flush=True)
    try:
        exporter.serve_forever()
    finally:
        exporter.close()
    return 0
