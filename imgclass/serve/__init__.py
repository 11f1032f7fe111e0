"""`imgclass serve`: one resident model behind the Open Inference Protocol (KServe v2) and a plain endpoint.

    from imgclass.serve import ServeOptions, serve
    serve(imgclass.load("resnet50"), ServeOptions(port=8000))     # blocks; SIGTERM drains and returns

Layout: `batching` (dynamic batches from concurrent requests, a bounded queue),
`protocol` (the v2 JSON and binary tensor data extension, the classification
extension), `metrics` (Prometheus text), `app` (the Starlette app), `client` (what
`--server` uses: the standard library only, no numpy, no ONNX Runtime), `ray`
(the same app as a Ray Serve deployment). Nothing here is imported by `import
imgclass`; Starlette and uvicorn come with the `serve` extra.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from imgclass.errors import MissingExtra, UsageError, option

DEFAULT_PORT = 8000
MAX_BODY = 32 * 1024 * 1024  # bytes of one request body; more is a 413, refused before it is all read


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and batches (the `imgclass serve` options, by name)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    name: str | None = None  # the model's name in /v2/models/{name}; None: the classifier's name or file stem
    max_batch: int = 8  # images run as one batch at most
    max_delay_ms: float = 5.0  # how long the first image of a batch waits for others
    max_queue: int = 64  # images admitted (decoding, waiting or running) at most; more is a 503
    max_body: int = MAX_BODY
    timeout_s: float = 60.0  # a request not answered in this time is a 504
    token: str | None = None  # bearer token every request but /v2/health/* must carry
    workers: int | None = None  # decode threads (default: the batch pipeline's)

    def check(self) -> None:
        """Refuse an open door and impossible limits (UsageError)."""
        if self.max_batch < 1 or self.max_queue < 1 or self.max_body < 1 or self.max_delay_ms < 0:
            raise UsageError(f"{option('max_batch')}, {option('max_queue')} and {option('max_body')} must be at least 1, "
                             f"{option('max_delay_ms')} at least 0")  # fmt: skip
        if self.max_queue < self.max_batch:
            raise UsageError(f"{option('max_queue')} {self.max_queue} cannot hold a batch of {option('max_batch')} "
                             f"{self.max_batch}")  # fmt: skip
        if not 0 <= self.port < 65536:
            raise UsageError(f"{option('port')} {self.port}: give a port between 1 and 65535")
        if self.token is not None and not self.token.strip():
            raise UsageError(f"{option('token')} must not be empty")
        if not is_loopback(self.host) and self.token is None:
            raise UsageError(
                f"{option('host')} {self.host} opens the model beyond this machine: it needs a {option('token')} "
                "(clients then send 'Authorization: Bearer TOKEN')"
            )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_serve() -> None:
    """Raise MissingExtra (exit 2) unless Starlette and uvicorn can be imported."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtra("serve", "imgclass serve") from None


def model_name(classifier_name: str) -> str:
    """The name clients use in URLs: a catalog name as it is, a file's stem (`resnet50.onnx` -> `resnet50`)."""
    import os

    base = os.path.basename(classifier_name.replace("+", "_"))
    stem, ext = os.path.splitext(base)
    name = stem if ext.lower() == ".onnx" else base
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
