"""Who may call ``/wan_api/``: checks every request passes before its handler runs.

- **Auth**: HTTP basic credentials (the standalone UI's ``--auth``, the WebUI's ``--api-auth``
  or ``--gradio-auth``) or a bearer token (``--api-token``), compared in constant time.
- **Host** (DNS rebinding): a server listening on a loopback address answers only requests
  whose ``Host`` is a loopback name or one the host allows; a page on ``evil.example``
  resolving to 127.0.0.1 gets 403.
- **Origin** (cross-site requests): a browser request from another origin is refused unless
  that origin is allowed (a reverse proxy's public address).
- **Body**: a POST body must be ``application/json`` and is counted as it streams in, so a
  huge or chunked body stops at the limit instead of filling memory.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ALLOWED_HOSTS_ENV = "DEFORUM_WAN_ALLOWED_HOSTS"  # comma-separated host names (a reverse proxy's)
ALLOWED_ORIGINS_ENV = "DEFORUM_WAN_ALLOWED_ORIGINS"  # comma-separated origins, e.g. https://wan.example
LOOPBACK_NAMES = ("localhost",)


class Refused(Exception):
    """A request the guard turns away: HTTP ``status`` with a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def parse_credentials(text: str | None) -> dict[str, str]:
    """``user:pass,user2:pass2`` (the WebUI's --api-auth form) -> {user: pass}."""
    found = {}
    for item in (text or "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep and user:
            found[user] = password
    return found


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
        guard.allowed_origins = [*guard.allowed_origins, *_env_list(ALLOWED_ORIGINS_ENV)]
        return guard

    @property
    def needs_auth(self) -> bool:
        return bool(self.credentials or self.token)

    def check(self, request) -> None:
        """Raise Refused when ``request`` (a Starlette request) may not proceed."""
        host = request.headers.get("host", "")
        self._check_host(request, host)
        self._check_origin(request.headers.get("origin"), host)
        if self.needs_auth:
            self._check_auth(request.headers.get("authorization", ""))

    def _check_host(self, request, host: str) -> None:
        server = (request.scope.get("server") or ("", 0))[0]
        if not _loopback(server):
            return  # listening on a network address: auth is what protects it
        name = _hostname(host)
        if _loopback(name) or name in self.allowed_hosts:
            return
        raise Refused(403, f"Host {host!r} is not this server's (a loopback server answers loopback names;"
                           f" allow more with {ALLOWED_HOSTS_ENV})")

    def _check_origin(self, origin: str | None, host: str) -> None:
        if origin is None:
            return  # not a browser's cross-site request (curl, scripts, same-origin GETs)
        if origin.rstrip("/") in self.allowed_origins:
            return
        parts = urlsplit(origin)
        if parts.netloc and parts.netloc.lower() == host.lower():
            return  # the page this server itself served
        raise Refused(403, f"requests from {origin!r} are not allowed (allow an origin with {ALLOWED_ORIGINS_ENV})")

    def _check_auth(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token and hmac.compare_digest(value.strip(), self.token):
            return
        if scheme.lower() == "basic" and self.credentials:
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            expected = self.credentials.get(user)
            if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
                return
        raise Refused(401, "authentication required", {"WWW-Authenticate": 'Basic realm="deforum-wan"'})


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
