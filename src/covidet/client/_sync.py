"""The synchronous client: gRPC or HTTP, timeouts, retries with backoff, fail-over across URLs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.client._core import (
    CLIENT_OPTIONS,
    RetryPolicy,
    client_for,
    diagnosis_request,
    infer_inputs,
    infer_kwargs,
    protocol_for,
    translate_error,
)
from covidet.client._forecast import Forecast, ForecastRequest
from covidet.client._result import Diagnosis, parse_outputs
from covidet.client._shm import SharedVolume
from covidet.client._volume import Volume, load_volume
from covidet.errors import CovidetError, InvalidInputError

__all__ = ["Client", "diagnose"]


class Client:
    """covidet client. ``url`` may be a list: servers are tried in order (fail-over)."""

    def __init__(
        self,
        url: str | list[str] = "127.0.0.1:8001",
        *,
        protocol: str | None = None,
        timeout_s: float = 300.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        shared_memory: bool = False,
        admin_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise InvalidInputError("at least one server URL is needed")
        self.protocol = protocol_for(self.urls[0], protocol)
        self.timeout_s = timeout_s
        self.policy = RetryPolicy(retries, backoff_s, max_backoff_s)
        # the CT through /dev/shm (servers on this machine only); admin_headers unlock the
        # server's shared-memory API when it is restricted
        self._shm = SharedVolume(admin_headers) if shared_memory else None
        self._clients: dict[str, Any] = {}

    def _client(self, url: str) -> Any:
        if url not in self._clients:
            self._clients[url] = client_for(url, self.protocol, self.timeout_s)
        return self._clients[url]

    def _call(self, fn: Any) -> Any:
        """Run ``fn(client)`` with retries (retryable errors only) and fail-over across URLs."""
        last: CovidetError | None = None
        for attempt in range(self.policy.retries + 1):
            for url in self.urls:
                try:
                    return fn(self._client(url))
                except Exception as exc:
                    err = translate_error(exc)
                    if not err.retryable:
                        raise err from exc
                    last = err
            if attempt < self.policy.retries:
                time.sleep(self.policy.backoff(attempt))
        assert last is not None
        raise last

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed round ``attempt``: `RetryPolicy.backoff`."""
        return self.policy.backoff(attempt)

    def is_ready(self, model: str = C.ENSEMBLE.name) -> bool:
        try:
            return bool(self._call(lambda c: c.is_model_ready(model)))
        except CovidetError:
            return False

    def diagnose(
        self,
        source: Any,
        *,
        spacing: Any = None,
        return_masks: bool = False,
        clinical: Any = None,
        model: str = C.ENSEMBLE.name,
    ) -> Diagnosis:
        """Diagnose one scan: a numpy HU volume (with ``spacing``), a NIfTI file or DICOM folder.

        ``clinical``: the patient's clinical features in `covidet.clinical.CLINICAL_SCHEMA` order
        (NaN for a missing lab value); adds the SVM (``p_svm``) and the fused DL#3 probability
        (``p_covid_fused``). Without it, ``p_covid_fused`` equals DL#2.
        """
        vol: Volume = load_volume(source, spacing)
        t0 = time.perf_counter()
        if self._shm is None:
            inputs, outputs = diagnosis_request(
                vol.hu, vol.spacing, return_masks=return_masks, protocol=self.protocol, clinical=clinical
            )
            result = self._call(lambda client: self._infer(client, model, inputs, outputs))
        else:
            shm = self._shm
            with shm.lock:
                region = (shm.name, shm.write(vol.hu.astype(np.int16, copy=False)))
                inputs, outputs = diagnosis_request(
                    vol.hu,
                    vol.spacing,
                    return_masks=return_masks,
                    protocol=self.protocol,
                    clinical=clinical,
                    ct_region=region,
                )

                def infer(client: Any) -> Any:
                    shm.register(client)
                    return self._infer(client, model, inputs, outputs)

                result = self._call(infer)
        latency = time.perf_counter() - t0
        return parse_outputs(result.as_numpy, latency_s=latency, source=vol.source, n_slices=vol.n_slices)

    def _infer(self, client: Any, model: str, inputs: list[Any], outputs: list[Any]) -> Any:
        return client.infer(model, inputs, outputs=outputs, **infer_kwargs(self.protocol, self.timeout_s))

    def forecast(
        self,
        days: Any,
        ratios: Any,
        query_days: Any = None,
        *,
        levels: Any = (),
        horizon_days: float = 14.0,
    ) -> Forecast:
        """Fit the patient's course on the server (GPR, DL#5) and forecast it.

        ``query_days`` defaults to a grid from the first scan to ``horizon_days`` after the last.
        """
        req = ForecastRequest.of(days, ratios, query_days, levels=levels, horizon_days=horizon_days)
        inputs = infer_inputs(req.inputs(), self.protocol)
        result = self._call(lambda c: c.infer(C.PROGRESSION_GPR.name, inputs))
        return req.result(result.as_numpy)

    def diagnose_many(self, sources: Iterable[Any], **kwargs: Any) -> Iterator[Diagnosis]:
        for source in sources:
            yield self.diagnose(source, **kwargs)

    def close(self) -> None:
        if self._shm is not None:
            self._shm.close()
        for c in self._clients.values():
            try:
                c.close()
            except Exception:  # closing is best effort
                pass
        self._clients.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def diagnose(source: Any, *, url: str | list[str] = "127.0.0.1:8001", **kwargs: Any) -> Diagnosis:
    """One-shot convenience: ``covidet.client.diagnose("scan_folder/")``."""
    client_kw = {k: kwargs.pop(k) for k in CLIENT_OPTIONS if k in kwargs}
    with Client(url, **client_kw) as client:
        return client.diagnose(source, **kwargs)
