"""Download a file to a path, verified, atomically: nothing unverified ever lands.

Bytes stream to a temporary file in the destination folder while their sha256
is computed; only a file with the expected size and checksum is renamed into
place. A dropped connection is resumed with an HTTP Range request when the
server allows it. Every failure removes the temporary file.

A URL that failed for good (HTTP 404 or 410, or bytes that are not the expected
file) is remembered for the rest of the process, so pulling several models
does not ask it again; connection trouble and server errors are not remembered.
URLs shown in messages never carry user:password@ or a query string.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from imgclass import __version__
from imgclass.errors import ModelError

CHUNK = 1 << 20


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, amount: int) -> None: ...
    def reset(self, completed: int) -> None: ...
    def finish(self) -> None: ...


class _NoProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def reset(self, completed: int) -> None:
        pass

    def finish(self) -> None:
        pass


# Why a URL can fail, as the one word shown to the user; the detail follows in brackets.
NOT_FOUND, GONE, FORBIDDEN, SERVER_ERROR, HTTP_ERROR = "not-found", "gone", "forbidden", "server-error", "http-error"
UNREACHABLE, INTERRUPTED, WRONG_SIZE, WRONG_CHECKSUM = "unreachable", "interrupted", "wrong-size", "wrong-checksum"
UNSUPPORTED, BAD_URL = "unsupported", "bad-url"


@dataclass(frozen=True)
class Failure:
    url: str  # as shown: no credentials, no query
    reason: str  # one word, see above
    detail: str

    def line(self) -> str:
        return f"{self.url}: {self.reason} ({self.detail})"


# Failures that will not change within a run. The key (url,) holds failures of the URL
# itself (404, 410); (url, sha256, size) holds "these bytes are not the file we expect".
_failed: dict[tuple, Failure] = {}
_failed_lock = threading.Lock()


class DownloadError(Exception):
    """One URL failed. `scope` is "url" or "content" when retrying in this run cannot help."""

    def __init__(self, reason: str, detail: str, scope: str | None = None):
        super().__init__(f"{reason} ({detail})")
        self.reason, self.detail, self.scope = reason, detail, scope


class DownloadFailed(ModelError):
    """Every URL failed; `failures` says why, one per URL, in the order tried."""

    def __init__(self, subject: str, failures: Sequence[Failure], hint: str | None = None):
        self.subject, self.failures, self.hint = subject, tuple(failures), hint
        super().__init__(failure_message(subject, self.failures, hint))

    def with_hint(self, hint: str) -> DownloadFailed:
        return DownloadFailed(self.subject, self.failures, hint)


def failure_message(subject: str, failures: Sequence[Failure], hint: str | None = None) -> str:
    """One line for one URL; else a sentence, then `  URL: reason (detail)` per URL, then the hint."""
    if len(failures) == 1:
        text = f"{subject}: download failed, nothing was saved: {failures[0].line()}"
        return f"{text}. {hint}" if hint else text
    if not failures:
        return f"{subject}: no URL to download from, nothing was saved" + (f". {hint}" if hint else "")
    lines = [f"{subject}: download failed from all {len(failures)} URLs, nothing was saved."]
    lines += [f"  {failure.line()}" for failure in failures]
    return "\n".join(lines + ([hint] if hint else []))


def display_url(url: str) -> str:
    """`url` without user:password@, query or fragment, fit for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(malformed URL)"
    host = parts.netloc.rpartition("@")[2]
    shown = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + ("?..." if parts.query else "")


def forget_failures() -> None:
    """Try every URL again, even those that failed for good earlier in this process."""
    with _failed_lock:
        _failed.clear()


def _remembered(url: str, sha256: str | None, size: int | None) -> Failure | None:
    with _failed_lock:
        return _failed.get((url,)) or _failed.get((url, sha256, size))


def _remember(url: str, sha256: str | None, size: int | None, err: DownloadError, failure: Failure) -> None:
    key = {"url": (url,), "content": (url, sha256, size)}.get(err.scope or "")
    if key is not None:
        with _failed_lock:
            _failed[key] = failure


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    subject: str | None = None,
) -> str:
    """Fetch the first URL that yields the right bytes into `dest`; return its sha256.

    Raises DownloadFailed (a ModelError) naming `subject` (default: the file name) when
    every URL fails.
    """
    progress = progress or _NoProgress()
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = sha256.lower() if sha256 else None
    failures = []
    for url in urls:
        shown = display_url(url)
        if not url.lower().startswith(("http://", "https://")):
            failures.append(Failure(shown, UNSUPPORTED, "only http and https URLs can be downloaded"))
            continue
        known = _remembered(url, sha256, size)
        if known is not None:
            failures.append(Failure(shown, known.reason, f"{known.detail}; failed earlier in this run, not retried"))
            continue
        try:
            return _fetch_one(url, dest, sha256, size, progress, retries, timeout)
        except DownloadError as err:
            failures.append(Failure(shown, err.reason, err.detail))
            _remember(url, sha256, size, err, failures[-1])
        finally:
            progress.finish()
    raise DownloadFailed(subject or dest.name, failures)


def _fetch_one(url: str, dest: Path, sha256, size, progress: Progress, retries: int, timeout: float) -> str:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        progress.start(dest.name, size)
        with open(tmp, "wb") as out:
            digest, received, announced = _stream(url, out, size, progress, retries, timeout)
        if size is not None and received != size:
            # Only a body the server announced in full says the URL holds another file.
            scope = "content" if announced else None
            raise DownloadError(WRONG_SIZE, f"got {received} bytes, expected {size}", scope)
        actual = digest.hexdigest()
        if sha256 and actual != sha256:
            raise DownloadError(WRONG_CHECKSUM, f"sha256 mismatch: got {actual}, expected {sha256}", "content")
        os.replace(tmp, dest)
        return actual
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out: BinaryIO, size, progress: Progress, retries: int, timeout: float):
    """Write the body of `url` to `out`, resuming with Range after a drop.

    Returns (sha256 object, bytes received, whether the server announced the length it sent).
    """
    digest, received, failures = hashlib.sha256(), 0, 0
    while True:
        with _open(url, received, timeout) as response:
            if received and response.status != 206:
                # The server ignored the Range request: start again from byte 0.
                out.seek(0)
                out.truncate()
                digest, received = hashlib.sha256(), 0
                progress.reset(0)
            length = response.headers.get("Content-Length")
            expected_end = received + int(length) if length and length.isdigit() else None
            received = _copy(response, out, digest, received, size, progress)
        if expected_end is None or received >= expected_end:
            return digest, received, expected_end is not None  # size and checksum decide
        failures += 1
        if failures > retries:
            raise DownloadError(INTERRUPTED, f"connection lost after {received} bytes ({failures} tries)")


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": f"imgclass/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        reason, scope = _http_reason(err.code)
        raise DownloadError(reason, f"HTTP {err.code} {err.reason}", scope) from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(UNREACHABLE, f"cannot connect: {getattr(err, 'reason', err)}") from None
    except ValueError:  # http.client.InvalidURL and friends
        raise DownloadError(BAD_URL, "not a valid URL") from None


def _http_reason(code: int) -> tuple[str, str | None]:
    if code in (404, 410):
        return (NOT_FOUND if code == 404 else GONE), "url"
    if code in (401, 403):
        return FORBIDDEN, None
    return (SERVER_ERROR if code >= 500 else HTTP_ERROR), None


def _copy(response, out: BinaryIO, digest, received: int, size: int | None, progress: Progress) -> int:
    """Copy until the body ends or the connection drops; return the bytes received so far."""
    try:
        while block := response.read(CHUNK):
            out.write(block)
            digest.update(block)
            received += len(block)
            progress.advance(len(block))
            if size is not None and received > size:
                raise DownloadError(WRONG_SIZE, f"server sent more than the expected {size} bytes", "content")
    except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError):
        pass
    return received
