"""Self-healing: reload a model whose Python-backend stub process died.

Triton 2.51's Python backend does not restart a crashed stub: every later request to that instance
fails with "Stub process '<instance>' is not healthy". Reloading the model through the
model-control API (explicit mode) starts fresh stubs, while the model's other instances and every
other model keep serving. `StubWatchdog` watches the server's stub processes and does that reload.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping

from covidet.errors import CovidetError
from covidet.server._procs import python_stubs
from covidet.server._server import TritonServer

__all__ = ["RELOAD_PARAMETER", "StubWatchdog", "reload_model"]

#: Model-config parameter counting the watchdog's reloads (models ignore it).
RELOAD_PARAMETER = "covidet_reload_generation"


def reload_model(
    http_url: str, model: str, *, headers: Mapping[str, str] | None = None, generation: int = 1
) -> None:
    """Reload ``model`` with fresh instances while its old ones keep serving until the new are ready.

    Loading an unchanged model is a no-op, and a config that differs only in its instance groups
    is updated in place; a changed parameter (``RELOAD_PARAMETER``, which models ignore) forces the
    full reload. Needs explicit model control and, when it is locked, the admin ``headers``.
    """
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(http_url, network_timeout=600)
    try:
        config = client.get_model_config(model, headers=dict(headers or {}))
        config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": str(generation)}
        client.load_model(model, headers=dict(headers or {}), config=json.dumps(config))
    finally:
        client.close()


class StubWatchdog:
    """Watch ``server``'s stub processes every ``interval_s``; reload a model when one of its stubs dies.

    ``headers`` unlock the model-control API when it is restricted (`admin_headers(..., "http")`).
    The server must run with ``model_control_mode="explicit"``. A context manager.
    """

    def __init__(
        self,
        server: TritonServer,
        *,
        headers: Mapping[str, str] | None = None,
        interval_s: float = 1.0,
        log: Callable[[str], None] = print,
    ) -> None:
        if server.model_control_mode != "explicit":
            raise ValueError(
                "reloading a model needs Triton's explicit model control: start the server with "
                f"model_control_mode='explicit' (it has {server.model_control_mode!r})"
            )
        self.server = server
        self.headers = dict(headers or {})
        self.interval_s = interval_s
        self.log = log
        self.expected: dict[str, set[str]] = {}
        self.reloads: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _live(self) -> dict[str, set[str]]:
        live: dict[str, set[str]] = {}
        if self.server.pid is not None:
            for stub in python_stubs(self.server.pid):
                live.setdefault(stub.model, set()).add(stub.instance)
        return live

    def snapshot(self) -> dict[str, set[str]]:
        """Record the stubs of the ready server as the set that must stay alive."""
        self.expected = self._live()
        return self.expected

    def check_once(self) -> list[str]:
        """Reload every model with a missing stub; returns the reloaded models."""
        live = self._live()
        reloaded = []
        for model, instances in self.expected.items():
            missing = instances - live.get(model, set())
            if missing:
                self.log(f"covidet: stub(s) {sorted(missing)} of model {model} died; reloading {model}")
                self._reload(model)
                reloaded.append(model)
        return reloaded

    def _reload(self, model: str) -> None:
        from tritonclient.utils import InferenceServerException

        t0 = time.monotonic()
        try:
            reload_model(self.server.http_url, model, headers=self.headers, generation=len(self.reloads) + 1)
        except InferenceServerException as exc:
            self.log(f"covidet: reloading {model} failed: {exc}")
            return
        took = time.monotonic() - t0
        self.reloads.append((model, took))
        self.log(f"covidet: {model} reloaded in {took:.1f} s")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.server.process is None or self.server.process.poll() is not None:
                continue  # the server itself is down: restarting it is the supervisor's job
            try:
                self.check_once()
            except (OSError, CovidetError) as exc:
                self.log(f"covidet: stub watchdog check failed: {exc}")

    def start(self) -> StubWatchdog:
        if not self.expected:
            self.snapshot()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="covidet-stub-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> StubWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
