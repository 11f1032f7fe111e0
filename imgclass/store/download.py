"""Download a file to a path, verified, atomically: nothing unverified ever lands.

Bytes stream to a temporary file in the destination folder while their sha256
is computed; only a file with the expected size and checksum is renamed into
place. A dropped connection is resumed with an HTTP Range request when the
server allows it. Every failure removes the temporary file.

A URL that failed for good (HTTP 404 or 410, or bytes that are not the expected
file) is remembered for the rest of the process, so pulling several models
does not ask it again; connection trouble and server errors are not remembered.
URLs shown in messages never carry user:password@ or a query string.

Bounded: a fetch has a total deadline (IMGCLASS_DOWNLOAD_TIMEOUT, default an hour)
and a minimum rate; a 5xx or 429 is asked again with back-off, honouring
Retry-After; redirects are followed to http and https only; the free space is
checked against the expected or announced length, and a full disk is reported
as such (CacheError, exit 4), never as a lost connection.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from imgclass._util.text import printable
from imgclass._util.version import __version__
from imgclass.data.sources import is_url
from imgclass.errors import CacheError, ModelError, UsageError, describe_os_error

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
UNSUPPORTED, BAD_URL, TOO_SLOW = "unsupported", "bad-url", "too-slow"


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


ENV_TIMEOUT = "IMGCLASS_DOWNLOAD_TIMEOUT"
DEADLINE = 3600.0  # seconds for the whole of one fetch (every URL, retry and wait), unless ENV_TIMEOUT says
MIN_RATE = 4096  # bytes a second, averaged over RATE_WINDOW: slower is a stalled transfer
RATE_WINDOW = 60.0
BACKOFF = 0.5  # first wait before retrying a 5xx or 429; doubles each time
MAX_WAIT = 60.0  # longest wait for a Retry-After


@dataclass
class Limits:
    """How long one fetch may take, and how slow a transfer may get, before it is given up."""

    deadline: float = DEADLINE
    min_rate: float = MIN_RATE
    window: float = RATE_WINDOW
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_env(cls) -> Limits:
        text = os.environ.get(ENV_TIMEOUT, "").strip()
        try:
            deadline = float(text) if text else DEADLINE
        except ValueError:
            raise UsageError(f"{ENV_TIMEOUT}={text!r}: give the number of seconds a download may take") from None
        if not deadline > 0:
            raise UsageError(f"{ENV_TIMEOUT}={text!r}: must be more than 0 seconds")
        return cls(deadline=deadline)

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.started)

    def check(self) -> None:
        if self.left() <= 0:
            raise DownloadError(TOO_SLOW, f"not done within {self.deadline:g} s (set {ENV_TIMEOUT} for longer)")


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    subject: str | None = None,
    limits: Limits | None = None,
) -> str:
    """Fetch the first URL that yields the right bytes into `dest`; return its sha256.

    Raises DownloadFailed (a ModelError) naming `subject` (default: the file name) when
    every URL fails, CacheError when the disk is full or the folder cannot be written.
    `limits` bounds the whole fetch in time and the transfer in rate.
    """
    progress = progress or _NoProgress()
    limits = limits or Limits.from_env()
    _writable(dest.parent)
    _check_space(dest.parent, size)
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
            return _fetch_one(url, dest, sha256, size, progress, _Attempt(retries, timeout, limits))
        except DownloadError as err:
            failures.append(Failure(shown, err.reason, err.detail))
            _remember(url, sha256, size, err, failures[-1])
        finally:
            progress.finish()
    raise DownloadFailed(subject or dest.name, failures)


@dataclass
class _Attempt:
    retries: int
    timeout: float
    limits: Limits


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(f"{folder}: cannot save downloads here: {describe_os_error(err)}") from None


def _check_space(folder: Path, needed: int | None) -> None:
    """Refuse before downloading a byte when the file cannot fit."""
    if not needed:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise CacheError(
            f"{folder}: no space left on device for the download: it needs {needed} bytes and "
            f"{free} are free; free some space or set IMGCLASS_HOME to a folder on another disk"
        )


def _fetch_one(url: str, dest: Path, sha256, size, progress: Progress, attempt: _Attempt) -> str:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        progress.start(dest.name, size)
        try:
            out = open(tmp, "wb")
        except OSError as err:
            raise CacheError(f"{dest.parent}: cannot save the download: {describe_os_error(err)}") from None
        with out:
            digest, received, announced = _stream(url, out, size, progress, attempt)
        if size is not None and received != size:
            # Only a body the server announced in full says the URL holds another file.
            scope = "content" if announced else None
            raise DownloadError(WRONG_SIZE, f"got {received} bytes, expected {size}", scope)
        actual = digest.hexdigest()
        if sha256 and actual != sha256:
            raise DownloadError(WRONG_CHECKSUM, f"sha256 mismatch: got {actual}, expected {sha256}", "content")
        os.replace(tmp, dest)
        return actual
    except OSError as err:  # writing the file: a full disk, an I/O error
        raise CacheError(f"{dest.parent}: cannot save the download: {describe_os_error(err)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out: BinaryIO, size, progress: Progress, attempt: _Attempt):
    """Write the body of `url` to `out`, resuming with Range after a drop.

    Returns (sha256 object, bytes received, whether the server announced the length it sent).
    """
    digest, received, drops = hashlib.sha256(), 0, 0
    while True:
        with _open_retrying(url, received, attempt) as response:
            if received and response.status != 206:
                # The server ignored the Range request: start again from byte 0.
                out.seek(0)
                out.truncate()
                digest, received = hashlib.sha256(), 0
                progress.reset(0)
            length = response.headers.get("Content-Length")
            expected_end = received + int(length) if length and length.isdigit() else None
            if expected_end is not None:
                _check_space(Path(out.name).parent, expected_end - received)
            received = _copy(response, out, digest, received, size, progress, attempt.limits)
        if expected_end is None or received >= expected_end:
            return digest, received, expected_end is not None  # size and checksum decide
        drops += 1
        if drops > attempt.retries:
            raise DownloadError(INTERRUPTED, f"connection lost after {received} bytes ({drops} tries)")


def _open_retrying(url: str, start: int, attempt: _Attempt):
    """Open `url`; a 5xx or 429 is asked again after a back-off (or the server's Retry-After)."""
    tries = 0
    while True:
        attempt.limits.check()
        try:
            return _open(url, start, min(attempt.timeout, max(1.0, attempt.limits.left())))
        except _Busy as busy:
            tries += 1
            if tries > attempt.retries:
                raise busy.error from None
            wait = busy.retry_after if busy.retry_after is not None else BACKOFF * 2 ** (tries - 1)
            if wait > min(MAX_WAIT, attempt.limits.left()):
                raise DownloadError(
                    busy.error.reason, f"{busy.error.detail}; asked to retry after {wait:g} s"
                ) from None
            time.sleep(wait)


class _Busy(Exception):
    """A 5xx or 429 answer: worth asking again, maybe after the server's Retry-After."""

    def __init__(self, error: DownloadError, retry_after: float | None):
        super().__init__(str(error))
        self.error, self.retry_after = error, retry_after


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http and https URLs only (never ftp:, file: or anything else).

    urllib copies every header of a request onto the redirected one, the proxy's
    credentials (`http_proxy=http://user:pass@proxy`) included: a redirect to a host that
    bypasses the proxy (`no_proxy`) would get them. They are dropped here; the proxy
    handler adds them again when the new request does go through the proxy.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(UNSUPPORTED, f"redirected to {display_url(newurl)}; only http and https are followed")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.remove_header("Proxy-authorization")
        return new


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    """A request for `url`; user:password@ in it becomes Basic authentication, sent to that host only
    (an unredirected header: a redirect never carries it along)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url, headers=headers)
    userinfo, _, host = parts.netloc.rpartition("@")
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)), headers=headers)
    user, _, password = userinfo.partition(":")
    token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(token).decode("ascii"))
    return request


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": f"imgclass/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return _opener.open(_request(url, headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        reason, scope = _http_reason(err.code)
        error = DownloadError(reason, f"HTTP {err.code} {printable(str(err.reason))[:100]}", scope)
        if err.code == 429 or err.code >= 500:
            raise _Busy(error, _retry_after(err.headers.get("Retry-After"))) from None
        raise error from None
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(UNREACHABLE, f"cannot connect: {getattr(err, 'reason', err)}") from None
    except ValueError:  # http.client.InvalidURL and friends
        raise DownloadError(BAD_URL, "not a valid URL") from None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_reason(code: int) -> tuple[str, str | None]:
    if code in (404, 410):
        return (NOT_FOUND if code == 404 else GONE), "url"
    if code in (401, 403):
        return FORBIDDEN, None
    return (SERVER_ERROR if code >= 500 else HTTP_ERROR), None


def _copy(response, out: BinaryIO, digest, received: int, size: int | None, progress: Progress, limits: Limits) -> int:
    """Copy until the body ends or the connection drops; return the bytes received so far.

    Reads whatever has arrived (never waits to fill a whole chunk), so a transfer that
    trickles is noticed: slower than `limits.min_rate` over a window, or past the deadline,
    is given up. A failed write (full disk) is an OSError for the caller, never a "drop".
    """
    window_start, window_bytes = time.monotonic(), 0
    while True:
        limits.check()
        try:
            block = response.read1(CHUNK)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError):
            return received
        if not block:
            return received
        out.write(block)
        digest.update(block)
        received += len(block)
        window_bytes += len(block)
        progress.advance(len(block))
        if size is not None and received > size:
            raise DownloadError(WRONG_SIZE, f"server sent more than the expected {size} bytes", "content")
        now = time.monotonic()
        if now - window_start >= limits.window:
            if window_bytes < limits.min_rate * (now - window_start):
                rate = window_bytes / (now - window_start)
                raise DownloadError(TOO_SLOW, f"{rate:.0f} bytes/s, below the minimum of {limits.min_rate:g}")
            window_start, window_bytes = now, 0


# An image named by a URL: fetched into memory by a decode worker, one connection per worker at a time.
URL_TIMEOUT = 30.0  # seconds to connect and receive the whole body
URL_MAX_BYTES = 50 * 1000 * 1000
URL_REDIRECTS = 5
# Connections open at once for image URLs, whoever asks: the decode threads (at most 8 per
# pipeline) each hold one while fetching; this bounds a process running several pipelines.
URL_CONNECTIONS = 16
_CONNECTIONS = threading.BoundedSemaphore(URL_CONNECTIONS)


@dataclass(frozen=True)
class UrlPolicy:
    """How an image URL may be fetched: time for the whole fetch, size of the body, redirects, offline."""

    timeout: float = URL_TIMEOUT
    max_bytes: int = URL_MAX_BYTES
    redirects: int = URL_REDIRECTS
    offline: bool = False


class _BoundedRedirects(_HttpOnlyRedirects):
    """http/https only, at most `redirects` of them, and none once the fetch is past its deadline."""

    def __init__(self, redirects: int, deadline: float):
        super().__init__()
        self.max_redirections = redirects  # type: ignore[misc]  # urllib reads it per instance
        self.deadline = deadline

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if time.monotonic() > self.deadline:
            raise DownloadError(TOO_SLOW, "the time for the fetch ran out while following redirects")
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def http_error_302(self, req, fp, code, msg, headers):
        try:
            return super().http_error_302(req, fp, code, msg, headers)
        except urllib.error.HTTPError as err:
            text = str(err.reason)
            if "is not allowed" in text:  # urllib refuses a redirect to file:, data: and the like itself
                where = display_url(headers.get("location") or headers.get("uri") or "")
                raise DownloadError(UNSUPPORTED, f"redirected to {where}; only http and https are followed") from None
            if "infinite loop" in text:  # a loop, or more than max_redirections
                raise DownloadError(HTTP_ERROR, f"more than {self.max_redirections} redirects") from None
            raise

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def fetch_bytes(url: str, policy: UrlPolicy = UrlPolicy()) -> bytes:
    """The body of an http(s) URL, within `policy`; raises DownloadError (reason and detail) otherwise.

    Nothing but the URL's own user:password@ (sent to its host only) identifies the caller:
    urllib reads no .netrc, keeps no cookies, and adds no Authorization of its own. Proxies
    come from the environment, as everywhere; a proxy's credentials go to that proxy only.
    """
    if policy.offline:
        raise DownloadError(UNSUPPORTED, "URLs are not fetched in an offline run")
    if not is_url(url):
        raise DownloadError(UNSUPPORTED, "only http and https URLs can be fetched")
    deadline = time.monotonic() + policy.timeout
    if not _CONNECTIONS.acquire(timeout=policy.timeout):
        raise DownloadError(TOO_SLOW, f"no free connection within {policy.timeout:g} s")
    try:
        return _fetch_within(url, policy, deadline)
    finally:
        _CONNECTIONS.release()


def _fetch_within(url: str, policy: UrlPolicy, deadline: float) -> bytes:
    opener = urllib.request.build_opener(_BoundedRedirects(policy.redirects, deadline))
    headers = {"User-Agent": f"imgclass/{__version__}", "Accept-Encoding": "identity"}
    try:
        request = _request(url, headers)
    except ValueError:
        raise DownloadError(BAD_URL, "not a valid URL") from None
    with _open_within(opener, request, policy.timeout) as response:
        length = response.headers.get("Content-Length")
        if length and length.strip().isdigit() and int(length) > policy.max_bytes:
            raise DownloadError(WRONG_SIZE, f"{int(length)} bytes announced, over the limit of {policy.max_bytes}")
        return _read_within(response, policy, deadline)


def _open_within(opener, request, timeout: float):
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        why, _ = _http_reason(err.code)
        raise DownloadError(why, f"HTTP {err.code} {printable(str(err.reason))[:100]}") from None
    except DownloadError:
        raise
    except TimeoutError:
        raise DownloadError(TOO_SLOW, f"no answer within {timeout:g} s") from None
    except (urllib.error.URLError, OSError) as err:
        reason: object = getattr(err, "reason", None) or err
        if isinstance(reason, TimeoutError):
            raise DownloadError(TOO_SLOW, f"no answer within {timeout:g} s") from None
        raise DownloadError(UNREACHABLE, f"cannot connect: {printable(str(reason))[:200]}") from None
    except (ValueError, http.client.HTTPException) as err:
        raise DownloadError(BAD_URL, f"not a valid URL or answer: {type(err).__name__}") from None


def _read_within(response, policy: UrlPolicy, deadline: float) -> bytes:
    """Read the body as it arrives, refusing it once it is over the size limit or the time is up."""
    chunks: list[bytes] = []
    received = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(TOO_SLOW, f"not received within {policy.timeout:g} s ({received} bytes so far)")
        _set_timeout(response, left)
        try:
            block = response.read1(CHUNK)
        except TimeoutError:  # a timed-out socket cannot be read again: this is the end either way
            raise DownloadError(
                TOO_SLOW, f"not received within {policy.timeout:g} s ({received} bytes so far)"
            ) from None
        except (http.client.HTTPException, OSError) as err:
            raise DownloadError(INTERRUPTED, f"connection lost after {received} bytes: {type(err).__name__}") from None
        if not block:
            return b"".join(chunks)
        received += len(block)
        if received > policy.max_bytes:
            raise DownloadError(WRONG_SIZE, f"more than the limit of {policy.max_bytes} bytes")
        chunks.append(block)


def _set_timeout(response, seconds: float) -> None:
    """Let one read wait no longer than the time the fetch has left."""
    sock = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.05, seconds))
        except OSError:
            pass
