"""Control-plane wire format and authentication.

Frames are a 4-byte big-endian length followed by a UTF-8 JSON object (never pickle).
A connection starts with a mutual challenge/response over the per-job secret:

1. AM -> node   ``{"type": "challenge", "nonce": n1}``
2. node -> AM   ``{"type": "auth", "nonce": n2, "mac": HMAC(secret, "node|job|attempt|n1|n2")}``
3. AM -> node   ``{"type": "auth_ok", "mac": HMAC(secret, "am|job|attempt|n1|n2")}`` or an
   error frame and close.

So the AM only talks to nodes of its job and attempt, and a node only trusts the real AM.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import struct
from typing import Any

from flink_dl.errors import AuthenticationError, ControlConnectionError, ProtocolError

MAX_FRAME_BYTES = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")


def send_msg(sock: socket.socket, msg: dict[str, Any]) -> None:
    """Send one JSON frame."""
    body = json.dumps(msg, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"control message of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    sock.sendall(_HEADER.pack(len(body)) + body)


def recv_msg(sock: socket.socket) -> dict[str, Any]:
    """Receive one JSON frame; raise ``ConnectionError`` on EOF, ``ProtocolError`` on junk."""
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"control frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    body = _recv_exact(sock, length)
    try:
        msg = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"control frame is not JSON: {exc}") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("control frame must be a JSON object with a 'type'")
    return msg


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ControlConnectionError("control connection closed by peer")
        buf += chunk
    return bytes(buf)


def _mac(secret: str, *parts: object) -> str:
    text = "|".join(str(p) for p in parts)
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def server_handshake(sock: socket.socket, secret: str, job_id: str, attempt: int) -> None:
    """AM side: challenge the peer; raise ``AuthenticationError`` (after telling it) on failure."""
    n1 = secrets.token_hex(16)
    send_msg(sock, {"type": "challenge", "nonce": n1, "job_id": job_id, "attempt": attempt})
    reply = recv_msg(sock)
    n2 = reply.get("nonce")
    mac = reply.get("mac")
    if reply["type"] != "auth" or not isinstance(n2, str) or not isinstance(mac, str):
        send_msg(sock, {"type": "error", "message": "expected an auth frame"})
        raise AuthenticationError("peer sent no auth frame")
    expected = _mac(secret, "node", job_id, attempt, n1, n2)
    if not hmac.compare_digest(expected, mac):
        send_msg(sock, {"type": "error", "message": "authentication refused: wrong job secret "
                        "or attempt"})
        raise AuthenticationError("peer failed authentication (wrong job secret or attempt)")
    send_msg(sock, {"type": "auth_ok", "mac": _mac(secret, "am", job_id, attempt, n1, n2)})


def client_handshake(sock: socket.socket, secret: str, job_id: str, attempt: int) -> None:
    """Node side: answer the AM's challenge and check the AM's proof."""
    challenge = recv_msg(sock)
    if challenge["type"] != "challenge" or not isinstance(challenge.get("nonce"), str):
        raise ProtocolError(f"expected a challenge from the AM, got {challenge['type']!r}")
    if challenge.get("job_id") != job_id or challenge.get("attempt") != attempt:
        raise AuthenticationError(
            f"AM serves job {challenge.get('job_id')} attempt {challenge.get('attempt')}, "
            f"not job {job_id} attempt {attempt}"
        )
    n1 = challenge["nonce"]
    n2 = secrets.token_hex(16)
    send_msg(sock, {"type": "auth", "nonce": n2, "mac": _mac(secret, "node", job_id, attempt,
                                                               n1, n2)})
    reply = recv_msg(sock)
    if reply["type"] == "error":
        raise AuthenticationError(f"AM refused this node: {reply.get('message')}")
    expected = _mac(secret, "am", job_id, attempt, n1, n2)
    if reply["type"] != "auth_ok" or not hmac.compare_digest(expected, str(reply.get("mac"))):
        raise AuthenticationError("the AM failed to prove it knows the job secret")
