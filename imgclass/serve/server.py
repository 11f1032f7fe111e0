"""Run the app on uvicorn until SIGTERM or SIGINT: stop accepting, answer what is in flight, return.

uvicorn's own handler re-raises the signal after its graceful shutdown (the
process would die by it); here a stop by signal is the normal end of a server,
so `serve` returns the signal and the command exits 0 for SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from imgclass.errors import EnvironmentFault
from imgclass.serve import ServeOptions, require_serve

if TYPE_CHECKING:
    from imgclass.classifier import Classifier

GRACE_S = 5.0  # beyond the request timeout, how long a stop waits for requests in flight


def serve(classifier: Classifier, options: ServeOptions, started: Callable[[str], None] | None = None) -> int | None:
    """Serve `classifier` until a signal; returns the signal that stopped it (None: stopped otherwise).

    `started(url)` is called once the socket listens and the model has warmed up.
    """
    options.check()
    require_serve()
    import uvicorn

    classifier.scorer.wait()  # a model that cannot start is its ModelError (exit 3), not a failed start-up

    from imgclass.serve.app import create_app

    config = uvicorn.Config(
        create_app(classifier, options),
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(options.timeout_s + GRACE_S),
        limit_concurrency=max(64, 4 * options.max_queue),  # connections; more are answered 503
        server_header=False,
    )
    server: Any = _Server(config, started)
    try:
        server.run()
    except OSError as err:
        raise EnvironmentFault(f"cannot listen on {options.host}:{options.port}: {err.strerror or err}") from err
    except SystemExit as err:  # uvicorn exits when it cannot bind (it logged why)
        raise EnvironmentFault(f"cannot listen on {options.host}:{options.port} (see the message above)") from err
    if not server.started:
        raise EnvironmentFault(f"cannot listen on {options.host}:{options.port} (see the messages above)")
    return server.stopped_by


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server:
    """A uvicorn Server whose signal handling stops gracefully and does not re-raise the signal."""

    def __new__(cls, config, started: Callable[[str], None] | None):
        import uvicorn

        class Server(uvicorn.Server):
            stopped_by: int | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            def _stop(self, sig: int, frame: object) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True  # a second Ctrl-C does not wait for requests in flight
                self.stopped_by = self.stopped_by or sig
                self.should_exit = True

            async def startup(self, sockets=None) -> None:
                await super().startup(sockets)
                if self.started and started is not None:
                    port = self.servers[0].sockets[0].getsockname()[1] if self.servers else config.port
                    started(url_for(config.host, port))

        return Server(config)
