"""`imgclass predict|batch --server URL`: the same output as a local run, from a running `imgclass serve`.

Imports neither numpy nor ONNX Runtime nor Pillow: the files are read here and
sent as bytes, the records come back and go through the same sinks as local ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgclass._util.text import printable
from imgclass.cli.environment import Environment
from imgclass.errors import UsageError
from imgclass.output.sinks import Sink

# Options that choose the model or how images become pixels: the server's, so a client cannot give them.
_SERVER_SIDE = {
    "model": (None, ()), "preset": (None,), "size": (None,), "resize": (None,), "crop_pct": (None,),
    "interpolation": (None,), "mean": (None,), "std": (None,), "bgr": (False,), "labels": (None,),
    "activation": ("auto", None), "exact_decode": (False,), "tta": ("none", None), "weights": (None,),
    "max_pixels": (None,), "allow_truncated": (False,), "threads": (None,),
    "groups": (None,), "abstain_below": (None,),  # not sent to the server (yet): they run locally only
    "every": ("1s", None), "summary": (False,), "video": (False,),  # video frames are decoded locally
}  # fmt: skip


def check_remote(values: dict[str, Any], engine: str, resume: bool, report: Path | None,
                 inputs: Sequence[str] = ()) -> None:  # fmt: skip
    """Refuse options and inputs that only a local run (or the server's own command line) can honour."""
    from imgclass.data.sources import is_url, is_video_name

    for item in inputs:
        if is_url(item) or is_video_name(item):
            raise UsageError(f"{printable(item)}: URLs and videos are read by a local run; leave out --server")
    for name, defaults in _SERVER_SIDE.items():
        if name in values and values[name] not in defaults:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is the server's choice; give it to `imgclass serve`, not with --server")
    if engine != "local":
        raise UsageError("--engine is the server's choice; give it to `imgclass serve`, not with --server")
    if resume or report is not None:
        raise UsageError("--resume and --report run locally only; leave out --server")


def classify_remote(env: Environment, server: str, inputs: list[str], values: dict[str, Any], *, view: str,
                    recursive: bool, make_sink: Callable[..., Sink]) -> int:  # fmt: skip
    """Records from the server into the sink `make_sink(env, fmt, target, view, progress, multi_label)` builds."""
    from imgclass.data.sources import check_inputs, expand
    from imgclass.output.sinks import choose_format
    from imgclass.output.targets import check_output, open_target
    from imgclass.serve.client import Client, ClientOptions, classify_paths

    check_inputs(inputs)
    fmt = choose_format(values["fmt"], values["output"], bool(env.stdout_isatty))
    existing = check_output(values["output"], fmt, False)
    options = ClientOptions(server, values["top"], values["threshold"], os.environ.get("IMGCLASS_TOKEN") or None,
                            connections=values["workers"] or 4)  # fmt: skip
    probe = Client(options)
    try:
        info = probe.info()  # an unreachable server or a wrong token fails before any output is opened
    finally:
        probe.close()
    if env.verbose:
        env.note(f"server {server}: model {info.get('model')}, preset {info.get('preset')}")
    multi_label = bool(info.get("multi_label"))
    tta = info.get("tta")
    options = dataclasses.replace(options, model=str(info.get("model", "")), preset=str(info.get("preset", "")),
                                  multi_label=multi_label, tta=str(tta) if tta not in (None, "none") else None)  # fmt: skip
    target = open_target(values["output"], fmt, False, env.stdout, existing, multi_label)
    images = failed = 0
    try:
        sink = make_sink(env, fmt, target, view, None, multi_label)
        sink.start()
        try:
            paths = expand(inputs, recursive=recursive, stdin=env.stdin, null=values["null"])
            for record in classify_paths(paths, options):
                sink.write(record)
                images += 1
                failed += record.error is not None
                if record.error is not None and not env.quiet and not (fmt == "table" and env.stderr_isatty):
                    env.err(f"{record.path}: {record.error}")
        finally:
            sink.close()
    finally:
        target.close()
    if env.verbose:
        env.note(f"{images - failed} classified, {failed} failed")
    return 1 if failed else 0
