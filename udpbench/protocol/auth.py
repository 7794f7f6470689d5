"""Token authentication on the control channel: nonces and HMAC proofs, without I/O.

A server started with a token announces ``auth: "hmac-sha256"`` in its HELLO. The client
answers with its own nonce and HMAC-SHA256(token, client label, both nonces); the server
checks it with ``hmac.compare_digest`` and proves it knows the token too, with the server
label. The token never crosses the network, and the server's fresh nonce makes a recorded
AUTH useless on another connection (docs/security.md, "Authentication").
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

AUTH_METHOD = "hmac-sha256"
TOKEN_ENV = "UDPBENCH_TOKEN"
NONCE_BYTES = 16
MAX_NONCE_CHARS = 128

NEED_TOKEN = "server requires a token"
AUTH_FAILED = "authentication failed"
EMPTY_TOKEN = "an empty token would leave the server without authentication: give a token, or none"


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def auth_mac(token: str, role: str, server_nonce: str, client_nonce: str) -> str:
    """HMAC-SHA256 over a role label and both nonces, keyed with the token (hex).

    The role label keeps the client's proof from being reflected back as the server's.
    """
    message = "\0".join(("udpbench-auth-v1", role, server_nonce, client_nonce)).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def check_mac(token: str, role: str, server_nonce: str, client_nonce: str, mac: str) -> bool:
    expected = auth_mac(token, role, server_nonce, client_nonce)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def valid_nonce(nonce) -> bool:
    return isinstance(nonce, str) and 16 <= len(nonce) <= MAX_NONCE_CHARS
