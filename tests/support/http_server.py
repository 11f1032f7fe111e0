"""A small real HTTP server on 127.0.0.1 for download tests (no mocks)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # path -> error status to answer with
    ranges: bool = True  # honour Range requests
    cut_after: int | None = None  # close the connection after this many body bytes...
    cut_times: int = 0  # ...for this many responses
    delay: float = 0.0  # seconds between chunks
    chunk: int = 65536  # bytes sent at a time
    flaky: dict[str, list] = field(default_factory=dict)  # path -> statuses to answer first, in turn
    headers: dict[str, str] = field(default_factory=dict)  # extra headers on error answers (Retry-After)
    reasons: dict[int, str] = field(default_factory=dict)  # status -> reason phrase to send
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    no_length: bool = False  # send no Content-Length: the body ends when the connection closes
    requests: list = field(default_factory=list)  # (path, Range header or None)
    authorizations: list = field(default_factory=list)  # Authorization header of each request, or None
    proxy_authorizations: list = field(default_factory=list)  # Proxy-Authorization of each request, or None
    lengths: dict[str, int] = field(default_factory=dict)  # path -> Content-Length to announce (a lie, if need be)
    drips: dict[str, float] = field(default_factory=dict)  # path -> seconds between single bytes of its body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        b: Behaviour = self.server.behaviour
        header = self.headers.get("Range")
        b.requests.append((self.path, header))
        b.authorizations.append(self.headers.get("Authorization"))
        b.proxy_authorizations.append(self.headers.get("Proxy-Authorization"))
        body = b.files.get(self.path)
        if self.path in b.redirects:
            self.send_response(302)
            self.send_header("Location", b.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = b.flaky[self.path].pop(0) if b.flaky.get(self.path) else b.statuses.get(self.path)
        if body is None or status is not None:
            self.send_response(status or 404, b.reasons.get(status or 404))
            for key, value in b.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", header or "")
        if match and b.ranges:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        if b.no_length:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(b.lengths.get(self.path, len(payload))))
        self.send_header("Accept-Ranges", "bytes" if b.ranges else "none")
        self.end_headers()
        if self.path in b.drips:
            self._drip(payload, b.drips[self.path])
            return
        limit = len(payload)
        if b.cut_times > 0 and b.cut_after is not None:
            b.cut_times -= 1
            limit = min(limit, b.cut_after)
        sent = 0
        while sent < limit:
            chunk = payload[sent : min(limit, sent + b.chunk)]
            self.wfile.write(chunk)
            self.wfile.flush()
            sent += len(chunk)
            if b.delay:
                time.sleep(b.delay)
        if limit < len(payload):
            self.close_connection = True
            self.connection.shutdown(2)

    def _drip(self, payload: bytes, seconds: float) -> None:
        """A byte at a time, `seconds` apart, until the client goes away."""
        self.close_connection = True
        try:
            for byte in payload:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(seconds)
        except OSError:
            pass


class Server:
    def __init__(self, behaviour: Behaviour | None = None):
        self.behaviour = behaviour or Behaviour()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.behaviour = self.behaviour
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
