"""Who may call this server: one ASGI middleware in front of every route it answers (the
standalone UI's gradio routes and ``/wan_api/``; in a WebUI, ``/wan_api/``), run before any
handler, plus the strict readers of the credentials it is given.

- **Host** (DNS rebinding): a server listening on a loopback address answers only requests
  whose ``Host`` is a loopback name or one the user allows; a page on ``evil.example``
  resolving to 127.0.0.1 gets 403. (On a network address a login is required instead.)
- **Origin** (cross-site requests, websockets included): a request a browser sends from
  another origin is refused unless that origin is allowed (a reverse proxy's public address).
- **CORS**: answered by this middleware alone. Headers the app behind it sets (gradio's own
  CORS, which admits any ``http://localhost:<port>`` with credentials) are dropped; only an
  allowed origin gets ``Access-Control-Allow-Origin``, with credentials.
- **Auth** on the API paths: HTTP basic credentials (the standalone UI's ``--auth``, the
  WebUI's ``--api-auth`` / ``--gradio-auth`` / ``--gradio-auth-path``) or a bearer token
  (``--api-token``), compared as bytes in constant time. The tab's own login is gradio's.
- **Content types**: every response it passes on says ``X-Content-Type-Options: nosniff``;
  a file gradio's file route serves from the output folder is never an active type
  (safe_files.py).
- **Body**: a request body that stalls for ``BODY_IDLE_SECONDS`` ends the request; a POST to
  the API must be ``application/json`` and is counted as it streams in (``read_json_body``).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import WanError
from .safe_files import passive, serves_file

ALLOWED_HOSTS_ENV = "DEFORUM_WAN_ALLOWED_HOSTS"  # comma-separated host names (a reverse proxy's)
ALLOWED_ORIGINS_ENV = "DEFORUM_WAN_ALLOWED_ORIGINS"  # comma-separated origins, e.g. https://wan.example
LOOPBACK_NAMES = ("localhost",)
SAFE_METHODS = ("GET", "HEAD")
BODY_IDLE_SECONDS = 30.0  # a body with no new byte for this long is a stalled (or slowloris) client
CORS_MAX_AGE = "600"


class Refused(Exception):
    """A request the guard turns away: HTTP ``status`` with a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class CredentialsError(WanError):
    """A login or token given on the command line that cannot be used as it stands."""


def parse_credentials(text: str | None, flag: str = "--auth") -> dict[str, str]:
    """``user:pass,user2:pass2`` (the WebUI's --api-auth / --gradio-auth form) -> {user: pass}.

    Strict: an empty item (a stray comma), an item without ``:``, an empty user or password,
    or a user named twice is a CredentialsError naming ``flag``; nothing is dropped silently
    (``admin:s3cr3t,XYZ`` is not the password ``s3cr3t``). A password may hold ``:``.
    """
    found: dict[str, str] = {}
    if text is None:
        return found
    for number, item in enumerate(text.split(","), 1):
        _add_pair(found, item, flag, f"item {number}")
    return found


def parse_credentials_file(path: str | os.PathLike, flag: str = "--gradio-auth-path") -> dict[str, str]:
    """A file of ``user:pass`` lines (each may hold several, comma-separated, as A1111 reads
    --gradio-auth-path); blank lines are skipped, anything else malformed is refused."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{flag}: cannot read {str(path)!r}: {exc.__class__.__name__}") from None
    found: dict[str, str] = {}
    for line_number, line in enumerate(lines, 1):
        if line.strip():
            for number, item in enumerate(line.split(","), 1):
                _add_pair(found, item, flag, f"line {line_number} item {number}")
    return found


def _add_pair(found: dict[str, str], item: str, flag: str, where: str) -> None:
    # The message never quotes the item: it may hold a password.
    problem = None
    user, sep, password = item.strip().partition(":")
    if not item.strip():
        problem = "is empty (a stray comma?)"
    elif not sep:
        problem = "has no ':' (a comma separates pairs; a password cannot hold one)"
    elif not user.strip() or not password.strip():
        problem = "has an empty user or password"
    elif user in found:
        problem = f"names user {user!r} a second time"
    if problem:
        raise CredentialsError(f"{flag} takes USER:PASS pairs separated by commas: {where} {problem}")
    found[user] = password


def check_token(token: str | None, flag: str = "--api-token") -> str | None:
    """A bearer token as given (None or "" when none): one that is blank, holds whitespace or
    control characters is refused (a header could not carry it as typed)."""
    if not token:
        return None
    if token.strip() != token or any(c.isspace() or not c.isprintable() for c in token):
        raise CredentialsError(f"{flag} must be one word without spaces or control characters")
    return token


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


@dataclass
class Guard:
    credentials: dict[str, str] = field(default_factory=dict)  # basic auth users; empty: none asked
    token: str | None = None  # a bearer token that also admits
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, **kwargs) -> Guard:
        guard = cls(**kwargs)
        guard.allowed_hosts = [*guard.allowed_hosts, *_env_list(ALLOWED_HOSTS_ENV)]
        guard.allowed_origins = [o.rstrip("/") for o in [*guard.allowed_origins, *_env_list(ALLOWED_ORIGINS_ENV)]]
        return guard

    @property
    def needs_auth(self) -> bool:
        return bool(self.credentials or self.token)

    def check_host(self, host: str, server: str) -> None:
        if not _loopback(server):
            return  # listening on a network address: a login is what protects it
        name = _hostname(host)
        if _loopback(name) or name in self.allowed_hosts:
            return
        raise Refused(403, f"Host {host!r} is not this server's (a loopback server answers loopback names;"
                           f" allow more with {ALLOWED_HOSTS_ENV})")

    def origin_allowed(self, origin: str) -> bool:
        """Named by the user (gets CORS)."""
        return origin.rstrip("/") in self.allowed_origins

    def check_origin(self, origin: str | None, host: str) -> None:
        if origin is None:
            return  # not a browser's cross-site request (curl, scripts, same-origin navigations)
        if self.origin_allowed(origin):
            return
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc and parts.netloc.lower() == host.lower():
            return  # the page this server itself served
        raise Refused(403, f"requests from {origin!r} are not allowed (allow an origin with {ALLOWED_ORIGINS_ENV})")

    def check_auth(self, header: bytes) -> None:
        """``header``: the raw Authorization value (bytes: a non-ASCII token is compared, not a 500)."""
        scheme, _, value = header.strip().partition(b" ")
        value = value.strip()
        if scheme.lower() == b"bearer" and self.token:
            if hmac.compare_digest(value, self.token.encode("utf-8")):
                return
        elif scheme.lower() == b"basic" and self.credentials:
            try:
                user, _, password = base64.b64decode(value, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user, password = b"", b""
            matched = False
            for known, secret in self.credentials.items():  # every pair compared: no early exit
                same = hmac.compare_digest(user, known.encode("utf-8"))
                matched |= same & hmac.compare_digest(password, secret.encode("utf-8"))
            if matched:
                return
        raise Refused(401, "authentication required", {"WWW-Authenticate": 'Basic realm="deforum-wan"'})


class GuardMiddleware:
    """A pure ASGI middleware: ``guard``'s checks on every request under ``prefixes`` (None:
    all of them), auth on those under ``auth_prefixes`` (None: the same ones)."""

    def __init__(self, app, guard: Guard, prefixes: tuple[str, ...] | None = None,
                 auth_prefixes: tuple[str, ...] | None = None, file_folders: tuple[str, ...] | None = None):
        self.app = app
        self.guard = guard
        self.prefixes = prefixes
        self.auth_prefixes = prefixes if auth_prefixes is None else auth_prefixes
        self.file_folders = file_folders  # where gradio's file route is kept passive (None: everywhere)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        files = scope["type"] == "http" and serves_file(path, self.file_folders)
        if not _under(path, self.prefixes):
            return await self.app(scope, receive, _guarded_send(send, files=files) if files else send)
        headers = _headers(scope)
        origin = headers.get(b"origin")
        origin = origin.decode("latin-1") if origin is not None else None
        cors = origin is not None and self.guard.origin_allowed(origin)
        try:
            self._check(scope, headers, origin)
        except Refused as exc:
            return await _refuse(scope, send, exc, origin if cors else None)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        return await self.app(scope, _body_deadline(receive),
                              _guarded_send(send, cors=True, origin=origin if cors else None, files=files))

    def _check(self, scope, headers: dict, origin: str | None) -> None:
        host = headers.get(b"host", b"").decode("latin-1")
        self.guard.check_host(host, (scope.get("server") or ("", 0))[0] or "")
        self.guard.check_origin(origin, host)
        if scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers:
            # A preflight from an allowed origin (any other was refused above): answered here.
            raise Refused(204, "", {"Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
                                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                                    "Access-Control-Max-Age": CORS_MAX_AGE})
        if self.guard.needs_auth and _under(scope.get("path", ""), self.auth_prefixes):
            self.guard.check_auth(headers.get(b"authorization", b""))


def install_guard(app, guard: Guard, prefixes: tuple[str, ...] | None = None,
                  auth_prefixes: tuple[str, ...] | None = None, file_folders: tuple[str, ...] | None = None) -> None:
    """Put GuardMiddleware outermost on a Starlette/FastAPI ``app``, in place of one put there
    before (a UI reload mounts again); works on a running app too (the WebUI's, at
    app_started): the stack is rebuilt on its next request."""
    from starlette.middleware import Middleware

    app.user_middleware[:] = [m for m in app.user_middleware if getattr(m, "cls", None) is not GuardMiddleware]
    app.user_middleware.insert(0, Middleware(GuardMiddleware, guard=guard, prefixes=prefixes,
                                             auth_prefixes=auth_prefixes, file_folders=file_folders))
    app.middleware_stack = None


def _under(path: str, prefixes: tuple[str, ...] | None) -> bool:
    return prefixes is None or any(path == p.rstrip("/") or path.startswith(p) for p in prefixes)


def _headers(scope) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        found.setdefault(name.lower(), value)  # the first of a repeated header, as Starlette reads it
    return found


async def _refuse(scope, send, exc: Refused, cors_origin: str | None) -> None:
    if scope["type"] == "websocket":  # closed before the handshake: the server answers 403
        return await send({"type": "websocket.close", "code": 1008})
    body = b"" if exc.status == 204 else json.dumps({"error": str(exc)}).encode()
    headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in exc.headers.items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff")]
    headers += _cors_headers(cors_origin)
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    if origin is None:
        return [(b"vary", b"Origin")]
    return [(b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]


def _guarded_send(send, *, cors: bool = False, origin: str | None = None, files: bool = False):
    """Responses say nosniff; with ``cors``, carry this middleware's CORS headers only, whatever
    the app set; with ``files`` (gradio's file route), a passive content type only."""
    async def guarded_send(message):
        if message["type"] == "http.response.start":
            dropped = (b"access-control-", b"x-content-type-options") if cors else (b"x-content-type-options",)
            kept = [(k, v) for k, v in message.get("headers") or [] if not k.lower().startswith(dropped)]
            kept = (passive(kept) if files else kept) + [(b"x-content-type-options", b"nosniff")]
            message = {**message, "headers": kept + (_cors_headers(origin) if cors else [])}
        await send(message)
    return guarded_send


def _body_deadline(receive):
    """Each chunk of a request body must come within BODY_IDLE_SECONDS, or the request ends as
    if the client had left. Once the body is complete, receive is untouched (a streaming
    response waits on it for the disconnect)."""
    complete = False

    async def timed_receive():
        nonlocal complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), BODY_IDLE_SECONDS)
        except asyncio.TimeoutError:
            complete = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message
    return timed_receive


async def read_json_body(request, limit: int) -> bytes:
    """The body of a JSON request, counted as it arrives: 415 for another content type, 413
    past ``limit`` bytes (whatever Content-Length claims, chunked or not)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"send the body as application/json (got {kind or 'no content type'})")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"request body is larger than {limit // 2**20} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body is larger than {limit // 2**20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def is_loopback(address: str) -> bool:
    """A listening address (``--host``) only this machine reaches."""
    return _loopback(address.strip("[]"))


def _hostname(host: str) -> str:
    """``Host`` header -> its name, without a port; IPv6 without brackets."""
    text = host.strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _loopback(name: str) -> bool:
    name = name.strip().lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
