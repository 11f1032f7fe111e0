"""The engine interface and the local engine; `imgclass.engines` opens one by name (Ray only when asked)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from imgclass.data.sources import expand, is_url
from imgclass.errors import UsageError
from imgclass.records import Record

if TYPE_CHECKING:
    from imgclass.classifier import Classifier

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineOptions:
    name: str = "local"
    address: str | None = None  # ray: the cluster to join; None: RAY_ADDRESS, else a new local instance
    actors: int | None = None  # ray: model actors (default: one per GPU with --device cuda, else half the CPUs)
    device: str | None = None  # ray: where the actors run the model (None: the classifier's --device)
    precision: str | None = None  # ray: the actors' precision (None: the classifier's)


@dataclass(frozen=True)
class RunOptions:
    """What one classification run needs besides its inputs (the CLI's record and batching options)."""

    top: int = 5
    threshold: float | None = None  # None: the model's default (0.5 multi-label, else 0)
    batch_size: int | None = None
    workers: int | None = None  # local: decode threads (ray decodes in tasks, one per free CPU)
    debug: bool = False
    groups: Any = None  # "coarse", a group file or a mapping (see Classifier.classify)
    abstain_below: float | None = None


@dataclass
class Cluster:
    """What a run used, for the summary line: nodes, CPUs, GPUs, model actors."""

    nodes: int = 1
    cpus: float = 0.0
    gpus: float = 0.0
    actors: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        nodes = f"{self.nodes} node" + ("s" if self.nodes != 1 else "")
        actors = f"{self.actors} model actor" + ("s" if self.actors != 1 else "")
        restarted = self.extra.get("actor_processes", 0) - self.actors
        again = f" ({restarted} restarted)" if restarted > 0 else ""
        return f"{nodes}, {self.cpus:g} CPUs, {self.gpus:g} GPUs, {actors}{again}"


class Records(Protocol):
    """A run's records, in input order; `stats` fills in as they come."""

    @property
    def stats(self) -> Any: ...
    def __iter__(self) -> Iterator[Record]: ...


class Engine:
    """The local engine: `Classifier.classify` in this process. Also the interface every engine has."""

    name = "local"
    cluster: Cluster | None = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def check_inputs(self, inputs: list[str]) -> None:
        """Refuse inputs this engine cannot read, before any model is loaded."""
        remote = [item for item in inputs if is_uri(item) and not is_url(item)]
        if remote:
            raise UsageError(f"{remote[0]}: object store URIs are read by the ray engine only («engine» ray)")

    def expand(self, inputs: Iterable[str], recursive: bool = False, stdin: Any = None, null: bool = False,
               video: bool = False) -> Iterator[str]:  # fmt: skip
        """Inputs as paths, in order (see `sources.expand`; `-` reads a list from `stdin`, NUL-separated with `null`;
        `video`: folders and globs list video files too)."""
        return expand(inputs, recursive=recursive, stdin=stdin, null=null, video=video)

    def embedder(self, classifier: Classifier, normalize: bool = False) -> Callable[..., Records]:
        """What `jobs.run_job` calls to make Embeddings (bottleneck vectors) instead of Records."""
        return functools.partial(classifier.embed, normalize=normalize)

    def classify(
        self, classifier: Classifier, paths: Iterable[str], options: RunOptions = RunOptions(),
        stop: threading.Event | None = None,
    ) -> Records:  # fmt: skip
        return classifier.classify(
            paths,
            top=options.top,
            threshold=options.threshold,
            batch_size=options.batch_size,
            workers=options.workers,
            stop=stop,
            expand_inputs=False,
            debug=options.debug,
            groups=options.groups,
            abstain_below=options.abstain_below,
        )


def is_uri(item: str) -> bool:
    """`s3://bucket/key`, `gs://...`, `file:///...`: a scheme pyarrow's filesystems may understand."""
    scheme, sep, _ = item.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()
