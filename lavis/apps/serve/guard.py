"""What keeps web pages the user happens to visit from driving a local server (ASGI middleware).

- **Host allow-list.** A page on ``evil.example`` can make its own name resolve to 127.0.0.1 (DNS
  rebinding) and then talk to this port as if same-origin; its requests still carry
  ``Host: evil.example``. Only the bound address, ``localhost``, ``127.0.0.1`` / ``::1`` and the
  names given with ``--allowed-hosts`` are answered (400 otherwise).
- **JSON-only POST bodies** (415 otherwise). A cross-origin page may send a "simple" request
  (``text/plain``, form data) without asking first; ``application/json`` forces the browser to
  ask (a CORS preflight), which is refused unless the origin is allowed.
- **CORS only for ``--cors-origins``.** A preflight from a listed origin is answered with the
  methods and headers it may use; from any other origin it gets 403 and no CORS headers. A POST
  whose ``Origin`` is neither this server nor a listed origin is refused (403). Responses to a
  listed origin carry ``Access-Control-Allow-Origin``; nothing else ever does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"


def host_name(host: str) -> str:
    """The name in a ``Host`` header (``name:port``, ``[v6]:port``), lower-case, without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGuard:
    """Wraps an ASGI app: Host allow-list, JSON-only POST bodies, CORS for configured origins only."""

    def __init__(self, app: Any, allowed_hosts: Iterable[str], cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = {host_name(h) for h in allowed_hosts if h != "*"}
        self.cors_origins = {o.rstrip("/").lower() for o in cors_origins}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host, origin, method = headers.get("host", ""), headers.get("origin"), scope["method"]
        name = host_name(host)
        if not self.any_host and name not in self.allowed_hosts:
            await _refuse(send, 400, f"this server does not answer requests for the host '{name[:80]}'; if that name "
                                     "is this machine, start the server with --allowed-hosts NAME", "host_not_allowed")
            return
        listed = origin is not None and origin.rstrip("/").lower() in self.cors_origins
        if method == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            if listed:
                await _preflight(send, origin)
            else:
                await _refuse(send, 403, f"cross-origin requests from {origin[:80]} are not allowed (--cors-origins)",
                              "origin_not_allowed")
            return
        if method not in ("GET", "HEAD", "OPTIONS"):
            same_origin = origin is not None and origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()
            if origin is not None and not (same_origin or listed):  # "null" (a sandboxed frame, a file) included
                await _refuse(send, 403, f"requests from the page {origin[:80]} are not allowed (--cors-origins)",
                              "origin_not_allowed")
                return
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                shown = media or "none"
                await _refuse(send, 415, f"the request body must be JSON sent as 'Content-Type: application/json' "
                                         f"(got {shown[:60]})", "unsupported_media_type")
                return
        if listed:
            send = _with_cors(send, origin)
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, message: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _preflight(send: Any, origin: str) -> None:
    headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
               (b"access-control-allow-methods", CORS_METHODS.encode()),
               (b"access-control-allow-headers", CORS_HEADERS.encode()),
               (b"access-control-max-age", b"600"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Any, origin: str) -> Any:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"access-control-allow-origin", origin.encode("latin-1")),
                                              (b"vary", b"Origin")]}
        await send(message)

    return wrapped


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> list[str]:
    """The default allow-list (the bound address and the loopback names) plus ``--allowed-hosts``."""
    return list(dict.fromkeys([host_name(bound), *LOOPBACK_NAMES, *extra]))
