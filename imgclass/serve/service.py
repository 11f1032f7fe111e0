"""What the routes share: the classifier, its batcher, options, counters; bounded bodies, timeouts, tokens.

Every body is bounded before it is read (Content-Length, then the bytes as they
come); a request is answered within the timeout or gets a 504; a client that goes
away cancels its request and frees its places in the queue.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING, Any

from imgclass.records import Record
from imgclass.serve import ServeOptions, model_name
from imgclass.serve.batching import Batcher, Outcome, Overloaded
from imgclass.serve.metrics import Metrics

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from imgclass.classifier import Classifier

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
BODY_BUDGET = 256 * 1024 * 1024  # bytes of request bodies held at once, at least
RAW_NAME = "<body>"  # a record's path for an image sent as the whole body, unless ?name= gives one


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, extra: Any = None):
        super().__init__(message)
        self.status, self.headers, self.extra = status, headers or {}, extra


class Service:
    """What the routes share: the classifier, its batcher, the options and the counters."""

    def __init__(self, classifier: Classifier, options: ServeOptions):
        self.classifier = classifier
        self.options = options
        self.name = options.name or model_name(classifier.name)
        self.metrics = Metrics()
        # request bodies held in memory at once, all requests together: beyond it, 503 with Retry-After
        self.body_budget = max(4 * options.max_body, BODY_BUDGET)
        self.buffered = 0
        self.batcher = Batcher(classifier, self.metrics, options.max_batch, options.max_delay_ms / 1000,
                               options.max_queue, options.workers)  # fmt: skip

    def authorized(self, request: Request) -> bool:
        if self.options.token is None or request.url.path in OPEN_PATHS:
            return True
        given = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, f"Bearer {self.options.token}".encode("utf-8", "surrogateescape"))

    def check_model(self, request: Request) -> None:
        name, version = request.path_params["name"], request.path_params.get("version", "1")
        if name != self.name or version != "1":
            raise HTTPError(404, f"unknown model {name!r} version {version!r}: this server has {self.name!r} version 1")

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it is known to be over the limit."""
        limit = self.options.max_body
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise HTTPError(413, f"the body is over the limit of {limit} bytes")
        if length is not None and self.buffered + int(length) > self.body_budget:
            raise HTTPError(503, "too many request bodies in memory; try again shortly", {"Retry-After": "1"})
        from starlette.requests import ClientDisconnect

        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, f"the body is over the limit of {limit} bytes")
                if self.buffered + len(chunk) > self.body_budget:
                    raise HTTPError(503, "too many request bodies in memory; try again shortly", {"Retry-After": "1"})
                self.buffered += len(chunk)
                request.state.held = getattr(request.state, "held", 0) + len(chunk)
                chunks.append(chunk)
        except ClientDisconnect:
            raise HTTPError(499, "the client went away before sending the whole body") from None
        return b"".join(chunks)

    def release(self, request: Request) -> None:
        """Give back the body budget a finished request held."""
        self.buffered -= getattr(request.state, "held", 0)
        request.state.held = 0

    async def outcomes(self, request: Request, images: list[tuple[bytes, str]]) -> list[Outcome]:
        """Run images through the batcher, within the timeout, for as long as the client is there."""
        if not self.batcher.ready:
            raise HTTPError(503, "the model is not ready yet", {"Retry-After": "1"})
        if len(images) > self.options.max_queue:
            raise HTTPError(
                413, f"{len(images)} images in one request; this server takes {self.options.max_queue} at most"
            )
        work = asyncio.ensure_future(self.batcher.classify(images))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({work, gone}, timeout=self.options.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
        if work not in done:
            if gone in done:
                raise HTTPError(499, "the client went away")
            raise HTTPError(504, f"no answer within {self.options.timeout_s:g} s")
        try:
            return work.result()
        except Overloaded as err:
            raise HTTPError(503, f"the queue is full ({err}); try again shortly", {"Retry-After": "1"}) from None

    def record(self, name: str, outcome: Outcome, top: int, threshold: float | None) -> Record:
        """The record `imgclass predict` makes for this image."""
        clf = self.classifier
        tta = None if clf.tta == "none" else clf.tta
        if outcome.error is not None or outcome.probabilities is None:
            return Record(name, clf.name, clf.preset, [], outcome.error or "no result", clf.multi_label, tta=tta)
        ranked = clf.model.ranker(top, threshold).rank_probabilities(outcome.probabilities[None])[0]
        return Record(name, clf.name, clf.preset, ranked, None, clf.multi_label, tta=tta)


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import Response

    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(body, status, headers, media_type="application/json")
