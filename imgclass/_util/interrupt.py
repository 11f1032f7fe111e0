"""Turn SIGINT and SIGTERM into a stop event, so a run can finish the records in flight.

The first signal sets the event: the pipeline stops taking new inputs and the
records already computed are written. A second signal ends the run at once with
`Interrupted`, whose exit code follows the signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from imgclass.errors import ImgclassError

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(ImgclassError):
    """A second signal arrived before the records in flight were written."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.exit_code = 128 + signum  # type: ignore[assignment]


@dataclass
class StopState:
    event: threading.Event = field(default_factory=threading.Event)
    signal: int | None = None


@contextmanager
def stop_on_signals() -> Iterator[StopState]:
    """Install the handlers for the duration of a run (main thread only; elsewhere a no-op)."""
    state = StopState()

    def handler(signum: int, frame: object) -> None:
        if state.signal is not None:
            raise Interrupted(signum)
        state.signal = signum
        state.event.set()

    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Outside a run: SIGINT and SIGTERM raise Interrupted, so `finally` blocks still run.

    Without this, SIGTERM would end the process on the spot and leave a download's
    temporary file behind. `stop_on_signals` takes over while records are written.
    """

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
