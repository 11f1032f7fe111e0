"""Download a file to a path, verified, atomically: nothing unverified ever lands.

Bytes stream to a temporary file in the destination folder while their sha256
is computed; only a file with the expected size and checksum is renamed into
place. A dropped connection is resumed with an HTTP Range request when the
server allows it. Every failure removes the temporary file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

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


class DownloadError(Exception):
    pass


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 30.0,
) -> str:
    """Fetch the first URL that yields the right bytes into `dest`; return its sha256."""
    progress = progress or _NoProgress()
    dest.parent.mkdir(parents=True, exist_ok=True)
    problems = []
    for url in urls:
        if not url.lower().startswith(("http://", "https://")):
            problems.append(f"{url}: only http and https URLs can be downloaded")
            continue
        try:
            return _fetch_one(url, dest, sha256, size, progress, retries, timeout)
        except DownloadError as err:
            problems.append(f"{url}: {err}")
        finally:
            progress.finish()
    raise ModelError(f"{dest.name}: download failed, nothing was saved: {'; '.join(problems)}")


def _fetch_one(url, dest: Path, sha256, size, progress: Progress, retries: int, timeout: float) -> str:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        digest = hashlib.sha256()
        received = 0
        failures = 0
        progress.start(dest.name, size)
        with open(tmp, "wb") as out:
            while True:
                headers = {"User-Agent": f"imgclass/{__version__}"}
                if received:
                    headers["Range"] = f"bytes={received}-"
                try:
                    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
                except urllib.error.HTTPError as err:
                    raise DownloadError(f"HTTP {err.code} {err.reason}") from None
                except (urllib.error.URLError, OSError) as err:
                    reason = getattr(err, "reason", err)
                    raise DownloadError(f"cannot connect: {reason}") from None
                with response:
                    if received and response.status != 206:
                        # The server ignored the Range request: start again from byte 0.
                        out.seek(0)
                        out.truncate()
                        digest, received = hashlib.sha256(), 0
                        progress.reset(0)
                    length = response.headers.get("Content-Length")
                    expected_end = received + int(length) if length and length.isdigit() else None
                    try:
                        while block := response.read(CHUNK):
                            out.write(block)
                            digest.update(block)
                            received += len(block)
                            progress.advance(len(block))
                            if size is not None and received > size:
                                raise DownloadError(f"server sent more than the expected {size} bytes")
                    except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError):
                        pass
                if expected_end is None or received >= expected_end:
                    break  # the server sent all it announced; size and checksum decide below
                failures += 1
                if failures > retries:
                    raise DownloadError(f"connection lost after {received} bytes ({failures} tries)")
        if size is not None and received != size:
            raise DownloadError(f"got {received} bytes, expected {size}")
        actual = digest.hexdigest()
        if sha256 and actual != sha256.lower():
            raise DownloadError(f"sha256 mismatch: got {actual}, expected {sha256.lower()}")
        os.replace(tmp, dest)
        return actual
    finally:
        tmp.unlink(missing_ok=True)
