"""`imgclass serve`: keep a model loaded behind the Open Inference Protocol (parse, load, serve, exit 0).

Written in the click style of the other commands, each option declared once here
(`serve_options`) so the Typer port can move them to `cli/params.py` as they are.
"""

from __future__ import annotations

import signal
from typing import Any

import click

from imgclass.cli.environment import Environment
from imgclass.cli.options import _stack, decode_options, display_options, model_options, scoring_options

SERVE_EXAMPLES = """\b
Examples:
  imgclass serve -m resnet50 --port 8000
  curl --data-binary @cat.jpg http://127.0.0.1:8000/v1/classify
  imgclass predict cat.jpg --server http://127.0.0.1:8000
  imgclass serve -m resnet50 --host 0.0.0.0 --token "$TOKEN" --max-batch 16
  imgclass serve -m resnet50 --engine ray --ray-address auto --replicas 2"""

serve_options = _stack(
    click.option("--name", help="The model's name in /v2/models/NAME (default: the catalog name or the file's stem)."),
    click.option("--host", default="127.0.0.1", show_default=True,
                 help="Address to listen on; any but a loopback address needs --token."),
    click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
                 help="Port to listen on (0: any free one)."),
    click.option("--token", envvar="IMGCLASS_TOKEN", help="Bearer token every request must carry (env IMGCLASS_TOKEN)."),
    click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
                 help="Images run through the model as one batch at most."),
    click.option("--max-delay-ms", type=click.FloatRange(0, 10_000), default=5.0, show_default=True,
                 help="How long the first image of a batch waits for others."),
    click.option("--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
                 help="Images admitted at once; more are answered 503 with Retry-After."),
    click.option("--max-body-mb", type=click.FloatRange(0.001, 1024), default=32.0, show_default=True,
                 help="Largest request body; more is answered 413."),
    click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
                 help="Seconds a request may take; more is answered 504."),
    click.option("--workers", type=click.IntRange(min=1), help="Decode threads (default: 2, or half the cores up to 8)."),
    click.option("--engine", type=click.Choice(("local", "ray"), case_sensitive=False), default="local",
                 show_default=True, help="Serve here, or as a Ray Serve deployment (pip install 'imgclass[ray-serve]')."),
    click.option("--ray-address", metavar="ADDRESS",
                 help="With --engine ray: the cluster to join (default: RAY_ADDRESS, else a new local instance)."),
    click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
                 help="With --engine ray: model replicas."),
)  # fmt: skip


@click.command(epilog=SERVE_EXAMPLES)
@model_options
@scoring_options
@decode_options
@serve_options
@display_options
@click.pass_obj
def serve(env: Environment, **values: Any) -> int:
    """Keep a model loaded and answer over HTTP: the Open Inference Protocol (KServe v2) and /v1/classify."""
    from imgclass.cli.loading import load_classifier
    from imgclass.serve import ServeOptions, require_serve

    engine, address, replicas = values.pop("engine").lower(), values.pop("ray_address"), values.pop("replicas")
    if engine == "local" and (address is not None or replicas != 1):
        from imgclass.errors import UsageError

        raise UsageError("--ray-address and --replicas need --engine ray")
    options = ServeOptions(
        host=values.pop("host"), port=values.pop("port"), name=values.pop("name"), max_batch=values.pop("max_batch"),
        max_delay_ms=values.pop("max_delay_ms"), max_queue=values.pop("max_queue"),
        max_body=int(values.pop("max_body_mb") * 1024 * 1024), timeout_s=values.pop("timeout_s"),
        token=values.pop("token"), workers=values.pop("workers"),
    )  # fmt: skip
    options.check()  # an open door or impossible limits: exit 2 before any model is fetched
    require_serve()
    if engine == "ray":
        from imgclass.serve.ray import require_ray_serve

        require_ray_serve()
    # background: ONNX Runtime's threads do not spin between runs, as decode threads share the cores
    classifier = load_classifier(env, values, background=True)
    if engine == "ray":
        from imgclass.serve.ray import serve_on_ray

        stopped = serve_on_ray(classifier, options, address, replicas, started=lambda url: _started(env, url))
    else:
        from imgclass.serve.server import serve as run_server

        stopped = run_server(classifier, options, started=lambda url: _started(env, url))
    return 128 + signal.SIGINT if stopped == signal.SIGINT else 0


def _started(env: Environment, url: str) -> None:
    env.note(f"serving on {url} (ready; SIGTERM or Ctrl-C stops after the requests in flight)")
