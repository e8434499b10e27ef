"""A small stand-in for the Hugging Face hub: serves a local folder as the model repo ``org/name``.

It answers the calls huggingface_hub (2.x) makes for snapshot_download / hf_hub_download, as the
hub answers them:

- ``GET /api/models/{repo}/revision/{rev}``: repo info, whose ``sha`` is the commit;
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=``: files (size, oid, lfs) and folders;
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}``: the file, with X-Repo-Commit, ETag (the sha256 for
  LFS files, the git blob id for others), Content-Length, and ``Range: bytes=N-`` answered with 206.

Errors carry the hub's ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo),
which the client turns into its exception types. Plain HTTP only: no xet, no CDN redirects.

Options: ``delay`` seconds before each ``chunk`` bytes of a body (to stop a download mid-way) and
``status`` (answer every request with it, e.g. 401, 403, 404, 500). ``bytes_sent`` counts body
bytes; ``requests`` logs (method, path).
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".pth", ".bin", ".model")  # what .gitattributes sends to LFS on the hub
ERROR_CODES = {401: "RepoNotFound", 403: "GatedRepo", 404: "RepoNotFound"}


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(self, folder: Path, repo: str = "org/tiny", *, delay: float = 0.0, chunk: int = 4096,
                 status: int | None = None):
        self.folder, self.repo = Path(folder), repo
        self.delay, self.chunk, self.status = delay, chunk, status
        self.commit = hashlib.sha1(repo.encode()).hexdigest()
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent = 0
        self.sending = 0  # file bodies being written now
        self.connections: set = set()  # open client sockets (kept alive between requests)
        self.lock = threading.Lock()
        self.files = self._index()
        repo_re = re.escape(repo)
        self.api = re.compile(rf"^/api/models/{repo_re}/(revision|tree)/([^/]+)(?:/(.*))?$")
        self.resolve = re.compile(rf"^/{repo_re}/resolve/([^/]+)/(.+)$")
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def _index(self) -> dict[str, dict]:
        files = {}
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            entry = {"type": "file", "path": path.relative_to(self.folder).as_posix(), "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()}
            if path.suffix in LFS_SUFFIXES:  # the tree lists the pointer's blob id and the LFS object
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{entry['sha256']}\nsize {len(data)}\n"
                entry["oid"] = _git_blob_id(pointer.encode())
                entry["lfs"] = {"oid": entry["sha256"], "size": len(data), "pointerSize": len(pointer)}
                entry["etag"] = entry["sha256"]
            else:
                entry["oid"] = entry["etag"] = _git_blob_id(data)
            files[entry["path"]] = entry
        return files

    def tree(self, prefix: str, recursive: bool) -> list[dict]:
        out, folders = [], set()
        for path, entry in self.files.items():
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):  # the folders on the way, once each
                folder = "/".join(([prefix] if prefix else []) + parts[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    out.append({"type": "directory", "path": folder, "size": 0,
                                "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                out.append({k: v for k, v in entry.items() if k in ("type", "path", "size", "oid", "lfs")})
        return out

    def count(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no file body is being written (a stopped client's connections are closed
        after it has moved on, so the bytes they send count a little later)."""
        end = time.monotonic() + timeout
        while self.sending and time.monotonic() < end:
            time.sleep(0.01)
        return not self.sending

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:  # and drop kept-alive connections, or the client's pool still reaches us
            for sock in list(self.connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the test reads hub.requests
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.hub.lock:
            self.server.hub.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.hub.lock:
            self.server.hub.connections.discard(self.connection)
        super().finish()

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_GET(self) -> None:
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        path = unquote(url.path)
        with hub.lock:
            hub.requests.append((self.command, path))
        if hub.status is not None:
            return self.error(hub.status, ERROR_CODES.get(hub.status))
        if m := hub.api.match(path):
            kind, rev, rest = m.groups()
            if unquote(rev) not in ("main", hub.commit):
                return self.error(404, "RevisionNotFound")
            if kind == "revision":
                return self.json({"id": hub.repo, "sha": hub.commit, "private": False,
                                  "siblings": [{"rfilename": p} for p in hub.files]})
            recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
            return self.json(hub.tree((rest or "").strip("/"), recursive))
        if m := hub.resolve.match(path):
            rev, name = m.groups()
            if rev not in ("main", hub.commit):
                return self.error(404, "RevisionNotFound")
            if name not in hub.files:
                return self.error(404, "EntryNotFound")
            return self.file(hub.files[name], body)
        return self.error(404, "RepoNotFound")

    def file(self, entry: dict, body: bool) -> None:
        hub = self.server.hub
        data = (hub.folder / entry["path"]).read_bytes()
        start = 0
        if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(m.group(1))
            if start >= len(data):
                return self.error(416, None)
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", hub.commit)
        self.send_header("ETag", f'"{entry["etag"]}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        with hub.lock:
            hub.sending += 1
        try:
            for i in range(start, len(data), hub.chunk):
                if hub.delay:
                    time.sleep(hub.delay)
                piece = data[i:i + hub.chunk]
                self.wfile.write(piece)
                self.wfile.flush()
                hub.count(len(piece))
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            self.close_connection = True
        finally:
            with hub.lock:
                hub.sending -= 1

    def json(self, value) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    def error(self, status: int, code: str | None) -> None:
        data = json.dumps({"error": f"{code or 'Error'} ({status})"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", f"{code or 'Error'} ({status})")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

