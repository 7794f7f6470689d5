"""The HTTP side: ``/probe`` (blackbox_exporter's multi-target pattern) and ``/metrics``.

Every refusal happens before anything is sent: the query string is parsed, the module looked
up, the target checked against the allow-list and the limits; only then does a probe measure.
A refused request gets a 4xx status and one line saying why, and is counted in
``udpbench_exporter_refused_probes_total{reason}``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from udpbench._version import __version__
from udpbench.exporter.allow import AllowList, NotAllowed, parse_target
from udpbench.exporter.config import Config
from udpbench.exporter.limits import ProbeLimits, TooMany
from udpbench.exporter.probes import probe

log = logging.getLogger("udpbench.exporter")

REFUSALS = ("bad_request", "unknown_module", "not_allowed", "concurrency", "target_rate")
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
REQUEST_READ_TIMEOUT_S = 10.0  # a client that sends its request slower than this is dropped


class Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason = status, reason


class Exporter:
    """The exporter: ``start()`` listens and serves in a thread; ``close()`` stops it.

    ``token``: for servers that require one (from a file or the environment; never a URL)."""

    def __init__(self, config: Config, allow: AllowList, host: str = "127.0.0.1", port: int = 9717,
                 token: str | None = None, clock=time.monotonic):
        self.config, self.allow, self.token, self.clock = config, allow, token, clock
        self.limits = ProbeLimits(config.limits.concurrency, config.limits.probes_per_minute)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.probes = Counter("udpbench_exporter_probes", "probes measured, by module and result",
                              ["module", "result"], registry=self.registry)
        self.refused = Counter("udpbench_exporter_refused_probes", "probe requests refused before measuring",
                               ["reason"], registry=self.registry)
        for reason in REFUSALS:
            self.refused.labels(reason)
        self.running = Gauge("udpbench_exporter_probes_running", "probes measuring now", registry=self.registry)
        self.running.set_function(lambda: self.limits.running)
        self.seconds = Histogram("udpbench_exporter_probe_duration_seconds", "seconds each probe took",
                                 ["module"], registry=self.registry)
        Gauge("udpbench_exporter_build_info", "the udpbench version", ["version"],
              registry=self.registry).labels(__version__).set(1)
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    def start(self) -> "Exporter":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="udpbench-exporter", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> "Exporter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- /probe --------------------------------------------------------------------------

    def admit(self, query: str, scrape_timeout: str | None):
        """(module, address, port, budget) for an acceptable request; Refused otherwise.
        Takes a concurrency slot on success: give it back with ``limits.release()``."""
        try:
            params = parse_qs(query, keep_blank_values=True, strict_parsing=True, max_num_fields=10)
        except ValueError as exc:
            raise Refused(400, "bad_request", f"bad query string: {exc}") from None
        if "token" in params:
            raise Refused(400, "bad_request", "a token is never taken from the URL: give the exporter one "
                                              "from a file or the environment")
        unknown = sorted(set(params) - {"target", "module"})
        if unknown:
            raise Refused(400, "bad_request", f"unknown parameter {unknown[0]!r}: only target and module")
        for name in ("target", "module"):
            if len(params.get(name, [])) != 1 or not params[name][0]:
                raise Refused(400, "bad_request", f"give exactly one {name}= parameter")
        name = params["module"][0]
        module = self.config.modules.get(name)
        if module is None:
            raise Refused(400, "unknown_module", f"unknown module {name[:64]!r}: known are "
                                                 f"{', '.join(sorted(self.config.modules))}")
        try:
            target = parse_target(params["target"][0])
        except ValueError as exc:
            raise Refused(400, "bad_request", str(exc)) from None
        budget = self._budget(scrape_timeout)
        try:
            addresses = self.allow.check(target.host)
        except NotAllowed as exc:
            raise Refused(403, "not_allowed", str(exc)) from None
        try:
            self.limits.admit(target.host.lower(), self.clock())
        except TooMany as exc:
            raise Refused(429, exc.limit, str(exc)) from None
        return module, (addresses[0] if addresses else None), target.port or module.port, budget

    def _budget(self, header: str | None) -> float:
        """Seconds a probe may take: Prometheus's scrape timeout less an offset for the answer."""
        limits = self.config.limits
        if header is None:
            return limits.timeout
        try:
            timeout = float(header)
        except ValueError:
            timeout = math.nan
        if not (math.isfinite(timeout) and timeout > 0):
            raise Refused(400, "bad_request", f"{SCRAPE_TIMEOUT_HEADER} {header[:32]!r} is not a positive number")
        return max(0.0, min(timeout - limits.timeout_offset, limits.timeout))

    def run_probe(self, module, address: str | None, port: int, budget: float) -> CollectorRegistry:
        started = time.monotonic()
        try:
            registry = probe(module, address, port, budget, self.token)
        finally:
            self.limits.release()
        success = registry.get_sample_value("udpbench_probe_success")
        self.probes.labels(module.name, "success" if success else "failure").inc()
        self.seconds.labels(module.name).observe(time.monotonic() - started)
        return registry


def _handler(exporter: Exporter):
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_READ_TIMEOUT_S
        server_version = f"udpbench-exporter/{__version__}"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                if url.path == "/probe":
                    self._probe(url.query)
                elif url.path == "/metrics":
                    self._metrics(exporter.registry)
                elif url.path == "/":
                    self._line(200, "udpbench exporter: /probe?target=HOST[:PORT]&module=NAME, /metrics")
                else:
                    self._line(404, f"no page {url.path[:64]!r}: /probe or /metrics")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the scraper gave up; nothing to answer

        def _probe(self, query: str) -> None:
            try:
                module, address, port, budget = exporter.admit(query, self.headers.get(SCRAPE_TIMEOUT_HEADER))
            except Refused as exc:
                exporter.refused.labels(exc.reason).inc()
                self._line(exc.status, str(exc))
                return
            self._metrics(exporter.run_probe(module, address, port, budget))

        def _metrics(self, registry) -> None:
            encode, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encode(registry)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _line(self, status: int, text: str) -> None:
            body = (text.replace("\n", " ") + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # to the log, not to stderr
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
