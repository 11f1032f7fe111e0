"""`imgclass serve`: keep a model loaded behind the Open Inference Protocol (parse, load, serve, exit 0)."""

from __future__ import annotations

import signal
from typing import Any

import typer

from imgclass.cli import params as p
from imgclass.cli.environment import Environment
from imgclass.cli.options import display, values

SERVE_EXAMPLES = """\b
Examples:
  imgclass serve -m resnet50 --port 8000
  curl --data-binary @cat.jpg http://127.0.0.1:8000/v1/classify
  imgclass predict cat.jpg --server http://127.0.0.1:8000
  imgclass serve -m resnet50 --host 0.0.0.0 --token "$TOKEN" --max-batch 16
  imgclass serve -m resnet50 --engine ray --ray-address auto --replicas 2"""


def serve(
    ctx: typer.Context,
    model: p.Models = None,
    preset: p.Preset = None,
    labels: p.Labels = None,
    activation: p.ActivationOpt = p.Activation.auto,
    offline: p.Offline = False,
    size: p.Size = None,
    resize: p.Resize = None,
    crop_pct: p.CropPct = None,
    interpolation: p.InterpolationOpt = None,
    mean: p.Mean = None,
    std: p.Std = None,
    bgr: p.Bgr = False,
    exact_decode: p.ExactDecode = False,
    tta: p.TTAOpt = p.TTA.none,
    weights: p.Weights = None,
    device: p.Device = "auto",
    threads: p.Threads = None,
    workers: p.Workers = None,
    allow_truncated: p.AllowTruncated = False,
    max_pixels: p.MaxPixels = None,
    name: p.ServeName = None,
    host: p.Host = "127.0.0.1",
    port: p.Port = 8000,
    token: p.Token = None,
    max_batch: p.MaxBatch = 8,
    max_delay_ms: p.MaxDelayMs = 5.0,
    max_queue: p.MaxQueue = 64,
    max_body_mb: p.MaxBodyMb = 32.0,
    timeout: p.RequestTimeout = 60.0,
    engine: p.ServeEngine = p.Engine.local,
    ray_address: p.RayAddress = None,
    replicas: p.Replicas = 1,
    verbose: p.Verbose = False,
    quiet: p.Quiet = False,
    color: p.ColorOpt = p.Color.auto,
    debug: p.Debug = False,
) -> int:
    """Keep a model loaded and answer over HTTP: the Open Inference Protocol (KServe v2) and /v1/classify."""
    given = values(locals())
    env = display(ctx, verbose, quiet, color, debug)
    return run_serve(env, given)


def run_serve(env: Environment, given: dict[str, Any]) -> int:
    from imgclass.cli.loading import load_classifier
    from imgclass.errors import UsageError
    from imgclass.serve import ServeOptions, require_serve

    engine, address, replicas = str(given.pop("engine")).lower(), given.pop("ray_address"), given.pop("replicas")
    if engine == "local" and (address is not None or replicas != 1):
        raise UsageError("--ray-address and --replicas need --engine ray")
    options = ServeOptions(
        host=given.pop("host"), port=given.pop("port"), name=given.pop("name"), max_batch=given.pop("max_batch"),
        max_delay_ms=given.pop("max_delay_ms"), max_queue=given.pop("max_queue"),
        max_body=int(given.pop("max_body_mb") * 1024 * 1024), timeout_s=given.pop("timeout"),
        token=given.pop("token"), workers=given.pop("workers"),
    )  # fmt: skip
    options.check()  # an open door or impossible limits: exit 2 before any model is fetched
    require_serve()
    if engine == "ray":
        from imgclass.serve.ray import require_ray_serve

        require_ray_serve()
    # background: ONNX Runtime's threads do not spin between runs, as decode threads share the cores
    classifier = load_classifier(env, given, background=True)
    if engine == "ray":
        from imgclass.serve.ray import serve_on_ray

        stopped = serve_on_ray(classifier, options, address, replicas, started=lambda url: _started(env, url))
    else:
        from imgclass.serve.server import serve as run_server

        stopped = run_server(classifier, options, started=lambda url: _started(env, url))
    return 128 + signal.SIGINT if stopped == signal.SIGINT else 0


def _started(env: Environment, url: str) -> None:
    env.note(f"serving on {url} (ready; SIGTERM or Ctrl-C stops after the requests in flight)")
