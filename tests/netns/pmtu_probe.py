"""Runs inside a lab namespace: one DF datagram and what came back, as JSON.

Sends --size payload bytes in IP_PMTUDISC_PROBE mode (DF set, device MTU) with IP_RECVERR
on, waits up to --wait seconds for an error, and prints
{"sent", "send_error", "icmp": [errno, origin, type, code, info] or null, "route_mtu"}.
"""
import argparse
import errno
import json
import select
import socket
import struct

SOL_IP, SOL_IPV6 = 0, 41
IP_MTU_DISCOVER, IP_RECVERR, IP_MTU = 10, 11, 14
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR, IPV6_DONTFRAG = 23, 24, 25, 62
PMTUDISC_PROBE = 3
MSG_ERRQUEUE = 0x2000

parser = argparse.ArgumentParser()
parser.add_argument("--to", required=True)
parser.add_argument("--port", type=int, default=9)
parser.add_argument("--size", type=int, required=True)
parser.add_argument("--wait", type=float, default=1.0)
args = parser.parse_args()

v6 = ":" in args.to
sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
level = SOL_IPV6 if v6 else SOL_IP
sock.setsockopt(level, IPV6_MTU_DISCOVER if v6 else IP_MTU_DISCOVER, PMTUDISC_PROBE)
if v6:
    sock.setsockopt(SOL_IPV6, IPV6_DONTFRAG, 1)
sock.setsockopt(level, IPV6_RECVERR if v6 else IP_RECVERR, 1)
sock.connect((args.to, args.port))
result = {"sent": False, "send_error": None, "icmp": None}
try:
    sock.send(b"\0" * args.size)
    result["sent"] = True
except OSError as exc:
    result["send_error"] = errno.errorcode.get(exc.errno, str(exc.errno))
poller = select.poll()
poller.register(sock, select.POLLERR)
if result["sent"] and poller.poll(int(args.wait * 1000)):
    _data, ancillary, _flags, _addr = sock.recvmsg(65535, 1024, MSG_ERRQUEUE)
    for _level, _type, cdata in ancillary:
        ee_errno, origin, icmp_type, code, _pad, info, _data2 = struct.unpack("=IBBBBII", cdata[:16])
        result["icmp"] = [ee_errno, origin, icmp_type, code, info]
result["route_mtu"] = sock.getsockopt(level, IPV6_MTU if v6 else IP_MTU)
print(json.dumps(result), flush=True)
