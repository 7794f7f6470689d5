"""Runs inside a lab namespace: records every IP packet (fragment) of UDP from one source.

A packet socket (AF_PACKET, SOCK_DGRAM) on --iface sees each fragment before reassembly.
Packets are grouped by IP identification; for each datagram it prints the UDP payload size
and the IP packet sizes ordered by fragment offset. A UDP socket on --port takes the
reassembled datagrams, so none is answered with port-unreachable. Prints "ready", then one
JSON line {"datagrams": [[payload, [sizes...]], ...], "received": n} after --expect
datagrams arrived or --deadline seconds.
"""
import argparse
import json
import select
import socket
import struct
import time

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD

parser = argparse.ArgumentParser()
parser.add_argument("--iface", required=True)
parser.add_argument("--src", required=True)
parser.add_argument("--bind", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--expect", type=int, required=True)
parser.add_argument("--deadline", type=float, default=5.0)
args = parser.parse_args()

v6 = ":" in args.src
proto = ETH_P_IPV6 if v6 else ETH_P_IP
raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(proto))
raw.bind((args.iface, proto))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
udp = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
udp.bind((args.bind, args.port))
src = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, args.src)
print("ready", flush=True)

groups = {}  # key -> list of (offset, ip_size, ip_payload_bytes)
singles = 0
received = 0


def parse(pkt):
    """-> (key, offset, ip_size, l4_bytes) for UDP from src, else None."""
    global singles
    if v6:
        if len(pkt) < 40 or pkt[8:24] != src:
            return None
        payload_len, nexthdr = struct.unpack_from("!HB", pkt, 4)
        if nexthdr == 17:
            singles += 1
            return ("single", singles), 0, 40 + payload_len, payload_len
        if nexthdr == 44:
            inner, _res, off_flags, ident = struct.unpack_from("!BBHI", pkt, 40)
            if inner == 17:
                return ident, off_flags & ~7, 40 + payload_len, payload_len - 8
        return None
    if len(pkt) < 20 or pkt[12:16] != src or pkt[9] != 17:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    total, ident, flags_frag = struct.unpack_from("!HHH", pkt, 2)
    offset = (flags_frag & 0x1FFF) * 8
    if offset == 0 and not flags_frag & 0x2000:
        singles += 1
        return ("single", singles), 0, total, total - ihl
    return ident, offset, total, total - ihl


deadline = time.monotonic() + args.deadline
drain_until = None
while True:
    now = time.monotonic()
    end = deadline if drain_until is None else min(deadline, drain_until)
    if now >= end:
        break
    ready, _, _ = select.select([raw, udp], [], [], end - now)
    if raw in ready:
        pkt = raw.recv(65535)
        seen = parse(pkt)
        if seen:
            key, offset, size, l4 = seen
            groups.setdefault(key, []).append((offset, size, l4))
    if udp in ready:
        udp.recv(65535)
        received += 1
        if received >= args.expect and drain_until is None:
            drain_until = time.monotonic() + 0.2  # the packet socket may lag a little

datagrams = []
for packets in groups.values():
    packets.sort()
    datagrams.append([sum(p[2] for p in packets) - 8, [p[1] for p in packets]])
print(json.dumps({"datagrams": datagrams, "received": received}), flush=True)
