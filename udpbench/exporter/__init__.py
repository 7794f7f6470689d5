"""The Prometheus exporter: blackbox_exporter's multi-target pattern for udpbench.

Prometheus scrapes ``/probe?target=HOST[:PORT]&module=NAME``; the exporter checks the target
against its allow-list and its limits, measures once, and answers with that measurement's
metrics. ``/metrics`` is the exporter's own health. See docs/exporter.md.
"""
