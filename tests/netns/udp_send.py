"""Runs inside a lab namespace: sends UDP datagrams to one address, prints JSON.

--size S --count N sends N datagrams of S payload bytes; --sizes a,b,c sends one of each.
--pmtu-mode picks IP_MTU_DISCOVER (0 DONT, 2 DO, 3 PROBE). --learn first sends one
full-size DF probe and waits for the router's ICMP, so the kernel caches the path MTU.
--gap seconds between datagrams. Output: {"sent", "errors", "learned_mtu"}.
"""
import argparse
import json
import select
import socket
import time

SOL_IP, SOL_IPV6 = 0, 41
IP_MTU_DISCOVER, IP_RECVERR, IP_MTU = 10, 11, 14
IPV6_MTU_DISCOVER, IPV6_MTU, IPV6_RECVERR, IPV6_DONTFRAG = 23, 24, 25, 62
MSG_ERRQUEUE = 0x2000

parser = argparse.ArgumentParser()
parser.add_argument("--to", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--size", type=int, default=64)
parser.add_argument("--count", type=int, default=1)
parser.add_argument("--sizes", default="")
parser.add_argument("--pmtu-mode", type=int, default=1)
parser.add_argument("--learn", type=int, default=0, metavar="IFACE_MTU")
parser.add_argument("--gap", type=float, default=0.0)
args = parser.parse_args()

v6 = ":" in args.to
sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
level = SOL_IPV6 if v6 else SOL_IP


def set_mode(mode):
    sock.setsockopt(level, IPV6_MTU_DISCOVER if v6 else IP_MTU_DISCOVER, mode)
    if v6:
        sock.setsockopt(SOL_IPV6, IPV6_DONTFRAG, 1 if mode in (2, 3) else 0)


sock.connect((args.to, args.port))
learned = None
if args.learn:
    set_mode(3)
    sock.setsockopt(level, IPV6_RECVERR if v6 else IP_RECVERR, 1)
    try:
        sock.send(b"\0" * (args.learn - (48 if v6 else 28)))
    except OSError:
        pass
    poller = select.poll()
    poller.register(sock, select.POLLERR)
    if poller.poll(1000):
        try:
            sock.recvmsg(65535, 1024, MSG_ERRQUEUE)
        except OSError:
            pass
    learned = sock.getsockopt(level, IPV6_MTU if v6 else IP_MTU)
    sock.setsockopt(level, IPV6_RECVERR if v6 else IP_RECVERR, 0)

set_mode(args.pmtu_mode)
sizes = [int(s) for s in args.sizes.split(",") if s] or [args.size] * args.count
sent = 0
errors = {}
for size in sizes:
    try:
        sock.send(b"\0" * size)
        sent += 1
    except OSError as exc:
        errors[exc.strerror] = errors.get(exc.strerror, 0) + 1
    if args.gap:
        time.sleep(args.gap)
print(json.dumps({"sent": sent, "errors": errors, "learned_mtu": learned}), flush=True)
