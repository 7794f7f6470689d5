"""Blocking adapters that drive the protocol over real sockets: client, server, streams, prober, pinger."""
