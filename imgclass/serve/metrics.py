"""What the server counts, rendered in the Prometheus text exposition format (version 0.0.4).

A handful of counters and histograms do not justify a dependency: they are kept
here under one lock and written out by `render()`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{_number(b)}"}} {c}' for b, c in zip(self.bounds, self.counts, strict=True)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {_number(self.total)}",
                f"{name}_count {self.count}"]  # fmt: skip
        return out


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{int(value)}.0"


class Metrics:
    """Requests by endpoint and status, images and failed images, batch sizes, queue and inference time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.images = 0
        self.image_errors = 0
        self.rejected = 0  # 503: the queue was full
        self.batch_size = Histogram(SIZES)
        self.queue_seconds = Histogram(SECONDS)
        self.inference_seconds = Histogram(SECONDS)
        self.request_seconds = Histogram(SECONDS)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.request_seconds.observe(seconds)
            self.rejected += status == 503

    def batch(self, size: int, inference: float, waits: list[float]) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.inference_seconds.observe(inference)
            for wait in waits:
                self.queue_seconds.observe(wait)

    def outcome(self, images: int, errors: int) -> None:
        with self._lock:
            self.images += images
            self.image_errors += errors

    def render(self, in_flight: int, ready: bool, body_bytes: int = 0) -> str:
        with self._lock:
            lines = _family("imgclass_requests_total", "counter", "HTTP requests by endpoint and status code.")
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(f'imgclass_requests_total{{endpoint="{endpoint}",code="{status}"}} {count}')
            for name, kind, text, value in (
                ("imgclass_images_total", "counter", "Images classified or refused.", self.images),
                ("imgclass_image_errors_total", "counter", "Images that could not be classified.", self.image_errors),
                ("imgclass_rejected_total", "counter", "Requests refused with 503 because the queue was full.",
                 self.rejected),
                ("imgclass_queue_images", "gauge", "Images admitted and not yet answered.", in_flight),
                ("imgclass_ready", "gauge", "1 once the model has run its warm-up batch.", int(ready)),
                ("imgclass_body_bytes", "gauge", "Bytes of request bodies held in memory.", body_bytes),
            ):  # fmt: skip
                lines += _family(name, kind, text) + [f"{name} {value}"]
            for name, text, hist in (
                ("imgclass_batch_size", "Images per model run.", self.batch_size),
                ("imgclass_queue_seconds", "Time an image waited for its batch.", self.queue_seconds),
                ("imgclass_inference_seconds", "Time of one model run.", self.inference_seconds),
                ("imgclass_request_seconds", "Time to answer a request.", self.request_seconds),
            ):
                lines += _family(name, "histogram", text) + hist.lines(name)
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
