"""A real `imgclass serve` process on 127.0.0.1 and a free port (--port 0), for the server tests.

The server says where it listens on stderr once it is ready; every wait here is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


def _command() -> list[str]:
    script = Path(sys.executable).parent / "imgclass"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgclass"]


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    stderr: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, **kw) -> tuple[int, dict]:
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data)

    def metric(self, name: str, headers: dict | None = None) -> float:
        _, _, text = self.request("GET", "/metrics", headers=headers)
        found = re.search(rf"^{re.escape(name)} (\S+)$", text.decode(), re.M)
        assert found, f"{name} not in /metrics"
        return float(found.group(1))

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


def start_server(*args: str, timeout: float = 120, env: dict | None = None, port: int = 0) -> Served:
    """Start `imgclass serve ARGS --port PORT` (0: a free one) and wait until it says it is ready (bounded)."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    process = subprocess.Popen([*_command(), "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env)  # fmt: skip
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not found:
        process.kill()
        process.wait(timeout=10)
        raise AssertionError(f"the server did not start: {''.join(lines)[-2000:]}")
    return Served(process, found[0], lines)


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def wait_until(predicate, timeout: float = 30, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
