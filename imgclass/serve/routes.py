"""The request handlers: each reads its request, asks the Service, and answers JSON (or binary tensors).

`wrap` puts the shared rules around every handler: the token, HTTP errors as
`{"error": ...}` with their status, and the request counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from imgclass._util.version import __version__
from imgclass.serve.metrics import CONTENT_TYPE
from imgclass.serve.protocol import HEADER, ProtocolError, encode_response, metadata, parse_infer
from imgclass.serve.service import RAW_NAME, HTTPError, Service, json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

Handler = Callable[["Request"], Awaitable["Response"]]
MAX_PARTS = 256  # files in one multipart /v1/classify request


class Handlers:
    def __init__(self, service: Service):
        self.service = service

    def wrap(self, endpoint: str, handler: Handler) -> Handler:
        service = self.service

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not service.authorized(request):
                    raise HTTPError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
                response = await handler(request)
            except HTTPError as err:
                body = {"error": str(err), **(err.extra or {})}
                response = json_response(body, err.status, err.headers)
            except ProtocolError as err:
                response = json_response({"error": str(err)}, 400)
            finally:
                service.release(request)
            service.metrics.request(endpoint, response.status_code, time.perf_counter() - start)
            return response

        return run

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.service.batcher.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server(self, request: Request) -> Response:
        return json_response({"name": "imgclass", "version": __version__,
                              "extensions": ["binary_tensor_data", "classification"]})  # fmt: skip

    async def model(self, request: Request) -> Response:
        self.service.check_model(request)
        return json_response(metadata(self.service.name, self.service.batcher.classes))

    async def model_ready(self, request: Request) -> Response:
        self.service.check_model(request)
        ready = self.service.batcher.ready
        return json_response({"name": self.service.name, "ready": ready}, 200 if ready else 503)

    async def info(self, request: Request) -> Response:
        """What a client needs before the first record (csv columns depend on multi_label)."""
        clf = self.service.classifier
        return json_response({"name": self.service.name, "model": clf.name, "preset": clf.preset,
                              "multi_label": clf.multi_label, "tta": clf.tta, "classes": len(clf.labels)})  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        from starlette.responses import Response

        batcher = self.service.batcher
        text = self.service.metrics.render(batcher.admitted, batcher.ready, self.service.buffered)
        return Response(text, media_type=CONTENT_TYPE)

    async def infer(self, request: Request) -> Response:
        import numpy as np
        from starlette.responses import Response

        service = self.service
        service.check_model(request)
        parsed = parse_infer(await service.body(request), request.headers.get(HEADER))
        outcomes = await service.outcomes(request, [(data, f"image {i}") for i, data in enumerate(parsed.images)])
        rows = []
        for i, outcome in enumerate(outcomes):
            if outcome.error is not None or outcome.probabilities is None:
                raise HTTPError(400, f"image {i}: {outcome.error}")
            rows.append(outcome.probabilities)
        probs = np.stack(rows).astype(np.float32)
        body, header = encode_response(service.name, parsed, probs, service.classifier.labels)
        if header is None:
            return Response(body, media_type="application/json")
        return Response(body, headers={HEADER: str(header)}, media_type="application/octet-stream")

    async def classify(self, request: Request) -> Response:
        """Records as `imgclass predict --format json` prints them: one for a body, a list for multipart files."""
        service = self.service
        top, threshold = _top_threshold(request)
        name = request.query_params.get("name") or RAW_NAME
        body = await service.body(request)
        content_type = request.headers.get("content-type", "")
        multipart = content_type.lower().startswith("multipart/form-data")
        images = _parts(body, content_type) if multipart else [(body, name)]
        outcomes = await service.outcomes(request, images)
        records = [service.record(n, o, top, threshold).to_dict() for (_, n), o in zip(images, outcomes, strict=True)]
        if multipart:
            return json_response(records)
        error = records[0]["error"]
        return json_response(records[0], 400 if error is not None else 200)


def _top_threshold(request: Request) -> tuple[int, float | None]:
    query = request.query_params
    try:
        top = int(query.get("top", "5"))
        threshold = float(query["threshold"]) if "threshold" in query else None
    except ValueError:
        raise HTTPError(400, "top must be a whole number and threshold a number") from None
    if top < 1 or (threshold is not None and not 0.0 <= threshold <= 1.0):
        raise HTTPError(400, "top must be at least 1 and threshold between 0 and 1")
    return top, threshold


def _parts(body: bytes, content_type: str) -> list[tuple[bytes, Any]]:
    """The files of a multipart/form-data body, with their file names (the standard library's parser)."""
    from email import message_from_bytes, policy

    message = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body, policy=policy.HTTP)
    if not message.is_multipart():
        raise HTTPError(400, "the multipart body cannot be read (check the boundary)")
    files = []
    for part in message.iter_parts():
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            files.append(
                (data, part.get_filename() or part.get_param("name", header="content-disposition") or RAW_NAME)
            )
        if len(files) > MAX_PARTS:
            raise HTTPError(413, f"at most {MAX_PARTS} files in one request")
    if not files:
        raise HTTPError(400, "the multipart body holds no files")
    return files
