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
    delay: float = 0.0  # seconds between 64 KiB chunks
    requests: list = field(default_factory=list)  # (path, Range header or None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        b: Behaviour = self.server.behaviour
        header = self.headers.get("Range")
        b.requests.append((self.path, header))
        body = b.files.get(self.path)
        if body is None or self.path in b.statuses:
            self.send_response(b.statuses.get(self.path, 404))
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
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes" if b.ranges else "none")
        self.end_headers()
        limit = len(payload)
        if b.cut_times > 0 and b.cut_after is not None:
            b.cut_times -= 1
            limit = min(limit, b.cut_after)
        sent = 0
        while sent < limit:
            chunk = payload[sent : min(limit, sent + 65536)]
            self.wfile.write(chunk)
            self.wfile.flush()
            sent += len(chunk)
            if b.delay:
                time.sleep(b.delay)
        if limit < len(payload):
            self.close_connection = True
            self.connection.shutdown(2)


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

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
