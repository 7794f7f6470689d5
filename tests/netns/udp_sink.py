"""Runs inside a lab namespace: counts UDP datagrams arriving on one port, prints JSON.

Prints "ready" once bound, then receives until --expect datagrams arrived, --idle seconds
passed without one, or --deadline seconds in all; then one JSON line:
{"count", "bytes", "sizes" (first 100), "first", "last"} (CLOCK_MONOTONIC seconds).
"""
import argparse
import json
import socket
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bind", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--expect", type=int, default=0)
parser.add_argument("--idle", type=float, default=1.0)
parser.add_argument("--deadline", type=float, default=10.0)
parser.add_argument("--echo", action="store_true", help="send each datagram back")
args = parser.parse_args()

family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind((args.bind, args.port))
print("ready", flush=True)

count = nbytes = 0
sizes = []
first = last = None
start = time.monotonic()
while not (args.expect and count >= args.expect):
    # Wait until the deadline for the first datagram, then at most --idle between datagrams.
    limit = start + args.deadline
    if last is not None:
        limit = min(limit, last + args.idle)
    left = limit - time.monotonic()
    if left <= 0:
        break
    sock.settimeout(left)
    try:
        data, peer = sock.recvfrom(65535)
    except socket.timeout:
        break
    last = time.monotonic()
    first = first if first is not None else last
    count += 1
    nbytes += len(data)
    if len(sizes) < 100:
        sizes.append(len(data))
    if args.echo:
        sock.sendto(data, peer)
print(json.dumps({"count": count, "bytes": nbytes, "sizes": sizes, "first": first, "last": last}), flush=True)
