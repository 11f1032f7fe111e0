"""`imgclass serve --engine ray`: the same Starlette app as a Ray Serve deployment.

Each replica loads the model itself (the driver's copy only checks it and names
it), builds the app with `create_app`, and Ray Serve runs the app's lifespan (the
warm-up) before the replica takes requests. Ray Serve's proxy listens on the host
and port given and spreads requests over the replicas; every replica batches its
own. Nothing here is imported unless the engine is asked for.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclass.errors import MissingExtra
from imgclass.serve import ServeOptions, model_name

if TYPE_CHECKING:
    from imgclass.classifier import Classifier

APP_NAME = "imgclass"


def require_ray_serve() -> None:
    """Raise MissingExtra (exit 2) unless Ray Serve can be imported."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise MissingExtra("ray-serve", "imgclass serve «engine» ray") from None


def _spec(classifier: Classifier) -> dict[str, Any]:
    """What a replica needs to load the same classifier: model files (absolute), weights, load options."""
    import dataclasses

    members = [str(m.path.resolve()) if os.path.exists(m.name) else m.name for m in classifier.members]
    weights = list(classifier.scorer.weights) if len(members) > 1 else None
    options = classifier.options
    if options.labels is not None:
        options = dataclasses.replace(options, labels=Path(options.labels).resolve())
    names = [m.name for m in classifier.members]  # records name the models as the driver's command line did
    return {"models": members, "names": names, "weights": weights, "options": options}


def _deployment() -> Any:
    from ray import serve

    @serve.deployment(name="imgclass")
    @serve.ingress()
    class Replica:
        def __init__(self, spec: dict[str, Any], options: ServeOptions):
            import imgclass

            models, load = spec["models"], spec["options"]
            if len(models) > 1:
                self.classifier = imgclass.load_ensemble(models, spec["weights"], options=load, background=True)
            else:
                self.classifier = imgclass.load(models[0], options=load, background=True)
            for member, name in zip(self.classifier.members, spec["names"], strict=True):
                member.name = name
            self.options = options

        def __serve_build_asgi_app__(self) -> Any:
            from imgclass.serve.app import create_app

            return create_app(self.classifier, self.options)

    return Replica


def deploy(classifier: Classifier, options: ServeOptions, address: str | None = None, replicas: int = 1) -> str:
    """Start Ray Serve (joining `address`, or the running instance, or a new local one) and deploy; returns the URL."""
    import ray
    from ray import serve

    from imgclass.serve.server import url_for

    options.check()
    for name in ("ray", "ray.serve"):  # Ray's INFO lines are not for the terminal
        logging.getLogger(name).setLevel(logging.WARNING)
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)  # fmt: skip
    serve.start(http_options={"host": options.host, "port": options.port})
    named = ServeOptions(**{**options.__dict__, "name": options.name or model_name(classifier.name)})
    # each replica admits as many requests as its own queue holds (Ray's default is 5)
    app = _deployment().options(num_replicas=replicas, max_ongoing_requests=options.max_queue)
    app = app.bind(_spec(classifier), named)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    return url_for(options.host, options.port)


def undeploy() -> None:
    """Delete the app (requests in flight finish first) and stop Ray Serve."""
    from ray import serve

    serve.delete(APP_NAME)  # blocks until the replicas have answered what they hold
    serve.shutdown()


def serve_on_ray(classifier: Classifier, options: ServeOptions, address: str | None, replicas: int,
                 started: Callable[[str], None] | None = None) -> int | None:  # fmt: skip
    """Deploy, wait for SIGTERM or SIGINT, undeploy; returns the signal."""
    import ray

    owned = not ray.is_initialized() and not (address or os.environ.get("RAY_ADDRESS"))
    stop, received = threading.Event(), []

    def handler(sig: int, frame: object) -> None:
        received.append(sig)
        stop.set()

    try:
        url = deploy(classifier, options, address, replicas)
        # after ray.init, which installs a SIGTERM handler of its own in the driver
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if started is not None:
                started(url)
            while not stop.wait(0.5):
                pass
            undeploy()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()
    return received[0] if received else None
