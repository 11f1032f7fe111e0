"""The client side of `imgclass serve`: send image files to `/v1/classify`, get the records back.

What `imgclass predict|batch --server URL` runs. It uses the standard library
only (no numpy, no ONNX Runtime, no Pillow, no Starlette), so a shell loop of
calls pays little start-up. Files are read here (bounded in size) and sent as
bytes; the server never sees a path, only the name the record carries.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from imgclass._util.text import display_path
from imgclass.data.sources import path_bytes
from imgclass.errors import EnvironmentFault, UsageError
from imgclass.records import Record
from imgclass.serve import MAX_BODY

RETRIES = 5  # tries of a request answered 503 (queue full), each after its Retry-After (capped)


@dataclass(frozen=True)
class ClientOptions:
    url: str
    top: int = 5
    threshold: float | None = None
    token: str | None = None
    timeout_s: float = 120.0
    connections: int = 4  # requests in flight at once (the server batches them)
    model: str = ""  # what an error record for a file this side cannot read names (the server's /v1/model)
    preset: str = ""
    multi_label: bool = False
    tta: str | None = None


class Client:
    """One keep-alive connection to a server; not shared between threads."""

    def __init__(self, options: ClientOptions):
        parsed = urllib.parse.urlsplit(options.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"{options.url!r} is not a server URL; give one like http://127.0.0.1:8000")
        self.options, self.parsed = options, parsed
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.parsed.scheme == "https" else http.client.HTTPConnection
            self._conn = kind(self.parsed.hostname or "", self.parsed.port, timeout=self.options.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request, reconnecting once if a kept-alive connection was closed; raises EnvironmentFault."""
        headers = {"Content-Type": "application/octet-stream"}
        if self.options.token:
            headers["Authorization"] = f"Bearer {self.options.token}"
        target = self.parsed.path.rstrip("/") + path
        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                self.close()
                if attempt == 2 or not isinstance(err, (http.client.RemoteDisconnected, ConnectionResetError)):
                    raise EnvironmentFault(f"cannot reach the server at {self.options.url}: {err}") from err
        raise AssertionError("unreachable")

    def classify(self, path: str) -> Record:
        """The record for one file: the server's, with this side's path; an unreadable file is an error record."""
        shown, raw = display_path(path), path_bytes(path)
        try:
            data = read_image_file(path, shown)
        except _FileProblem as err:
            opts = self.options
            return Record(shown, opts.model, opts.preset, [], str(err), opts.multi_label, raw, opts.tta)
        query = {"top": str(self.options.top), "name": shown}
        if self.options.threshold is not None:
            query["threshold"] = repr(self.options.threshold)
        status, headers, body = self._send(f"/v1/classify?{urllib.parse.urlencode(query)}", data)
        if status not in (200, 400) or not body.startswith(b"{"):
            raise EnvironmentFault(f"the server answered {status}: {_error_text(body)}")
        try:
            found = json.loads(body)
            if "path" not in found:
                raise EnvironmentFault(f"the server answered {status}: {_error_text(body)}")
            record = Record.from_dict(found)
        except (ValueError, KeyError, TypeError) as err:
            raise EnvironmentFault(f"the server's answer is not a record: {err}") from err
        return Record(shown, record.model, record.preset, record.predictions, record.error, record.multi_label, raw,
                      record.tta)  # fmt: skip

    def info(self) -> dict:
        """The server's /v1/model: name, model, preset, multi_label, tta, classes; raises EnvironmentFault."""
        status, _, body = self.request("GET", "/v1/model")
        if status != 200:
            raise EnvironmentFault(f"the server answered {status}: {_error_text(body)}")
        try:
            info = json.loads(body)
        except ValueError as err:
            raise EnvironmentFault(f"the server's /v1/model is not JSON: {err}") from err
        if not isinstance(info, dict):
            raise EnvironmentFault("the server's /v1/model is not a JSON object")
        return info

    def _send(self, path: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
        for _ in range(RETRIES):
            status, headers, body = self.request("POST", path, data)
            if status != 503:
                return status, headers, body
            time.sleep(min(5.0, _seconds(headers.get("retry-after"))))
        return status, headers, body


class _FileProblem(Exception):
    pass


def read_image_file(path: str, shown: str, limit: int = MAX_BODY) -> bytes:
    """A regular file's bytes, at most `limit` of them; FIFOs and devices are refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _FileProblem("no such file (or a broken symlink)") from None
    except IsADirectoryError:
        raise _FileProblem("is a directory, not an image") from None
    except PermissionError:
        raise _FileProblem("permission denied") from None
    except OSError as err:
        raise _FileProblem(f"cannot read file: {(err.strerror or str(err)).lower()}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
            raise _FileProblem(f"is {kind}, not an image file")
        if info.st_size > limit:
            raise _FileProblem(f"{info.st_size} bytes is over the server's limit of {limit}")
        data = handle.read(limit + 1)
    if not data:
        raise _FileProblem("empty file")
    if len(data) > limit:
        raise _FileProblem(f"the file is over the server's limit of {limit} bytes")
    return data


def _seconds(value: str | None) -> float:
    try:
        return max(0.1, float(value or 1))
    except ValueError:
        return 1.0


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error"))[:300]
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def classify_paths(paths: Iterable[str], options: ClientOptions) -> Iterator[Record]:
    """Records for `paths`, in order, with up to `options.connections` requests in flight."""
    import threading

    workers = max(1, options.connections)
    clients: list[Client] = []
    mine = threading.local()  # one keep-alive connection per thread

    def one(path: str) -> Record:
        client = getattr(mine, "client", None)
        if client is None:
            client = mine.client = Client(options)
            clients.append(client)
        return client.classify(path)

    Client(options)  # a bad URL is refused before any file is read
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imgclass-client")
    try:
        pending: list = []
        for path in paths:
            pending.append(pool.submit(one, path))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for client in clients:
            client.close()
