"""The Starlette app: Open Inference Protocol v2, `/v1/classify` for scripts, `/metrics`.

Routes:
    GET  /v2/health/live, /v2/health/ready          (no token needed: probes)
    GET  /v2, /v2/models/{name}[/versions/1], /v2/models/{name}[/versions/1]/ready
    POST /v2/models/{name}[/versions/1]/infer       (JSON, or the binary tensor data extension)
    GET  /v1/model                                  (name, preset, multi_label, tta: what a client needs)
    POST /v1/classify?top=K&threshold=P&name=N      (image bytes, or multipart files) -> record(s)
    GET  /metrics                                   (Prometheus text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgclass.serve import ServeOptions
from imgclass.serve.routes import Handlers
from imgclass.serve.service import Service

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from imgclass.classifier import Classifier


def create_app(classifier: Classifier, options: ServeOptions = ServeOptions()) -> Starlette:
    """The ASGI app serving `classifier`; it warms the model up when it starts (lifespan)."""
    import contextlib

    from starlette.applications import Starlette

    service = Service(classifier, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()

    app = Starlette(routes=_routes(service), lifespan=lifespan)
    app.state.service = service
    return app


def _routes(service: Service) -> list:
    from starlette.routing import Route

    handlers = Handlers(service)
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2/health/live", handlers.wrap("live", handlers.live)),
        Route("/v2/health/ready", handlers.wrap("ready", handlers.ready)),
        Route("/v2", handlers.wrap("server", handlers.server)),
        *(Route(p, handlers.wrap("metadata", handlers.model)) for p in (model, version)),
        *(Route(p + "/ready", handlers.wrap("model_ready", handlers.model_ready)) for p in (model, version)),
        *(Route(p + "/infer", handlers.wrap("infer", handlers.infer), methods=["POST"]) for p in (model, version)),
        Route("/v1/model", handlers.wrap("model_info", handlers.info)),
        Route("/v1/classify", handlers.wrap("classify", handlers.classify), methods=["POST"]),
        Route("/metrics", handlers.wrap("metrics", handlers.metrics)),
    ]
