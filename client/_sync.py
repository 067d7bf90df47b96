"""The synchronous client: gRPC or HTTP, timeouts, retries with backoff, fail-over across URLs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from covidet import _contract as C
from covidet.client._base import ClientBase
from covidet.client._core import CLIENT_OPTIONS, infer_inputs
from covidet.client._forecast import Forecast, ForecastRequest
from covidet.client._result import Diagnosis
from covidet.client._volume import Volume, load_volume
from covidet.errors import CovidetError, ServerBusyError

__all__ = ["Client", "diagnose"]


class Client(ClientBase):
    """covidet client. ``url`` may be a list: servers are tried in order (fail-over), or with
    ``balance`` each request starts at the next one (round robin over replicas).

    ``timeout_s`` bounds each request, retryable failures are retried ``retries`` times with
    jittered exponential backoff over all URLs, ``shared_memory`` passes the CT through /dev/shm
    to a server on this machine (``admin_headers`` for a server that locks that API), and
    ``compression="zstd"`` sends it as a lossless zstd frame (a server across a network link).
    """

    def _call(self, fn: Any) -> Any:
        """Run ``fn(client, refused)`` with retries (retryable errors only) and fail-over across
        URLs; ``refused``: the admission refusals this call has met so far (`ServerBusyError`)."""
        last: CovidetError | None = None
        refused = 0
        for url, wait in self._attempts():
            if wait:
                time.sleep(wait)
            try:
                return fn(self._client(url), refused)
            except Exception as exc:
                last = self._retryable(exc)
                refused += isinstance(last, ServerBusyError)
        assert last is not None
        raise last

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed round ``attempt``: `RetryPolicy.backoff`."""
        return self.policy.backoff(attempt)

    def is_ready(self, model: str = C.ENSEMBLE.name) -> bool:
        try:
            return bool(self._call(lambda c, _: c.is_model_ready(model)))
        except CovidetError:
            return False

    def diagnose(
        self,
        source: Any,
        *,
        spacing: Any = None,
        return_masks: bool = False,
        clinical: Any = None,
        explain: bool = False,
        model: str = C.ENSEMBLE.name,
    ) -> Diagnosis:
        """Diagnose one scan: a numpy HU volume (with ``spacing``), a NIfTI file or DICOM folder.

        ``clinical``: the patient's clinical features in `covidet.clinical.CLINICAL_SCHEMA` order
        (NaN for a missing lab value); adds the SVM (``p_svm``) and the fused DL#3 probability
        (``p_covid_fused``). Without it, ``p_covid_fused`` equals DL#2.

        ``explain``: also return why: the predicted class's attention on the top-K slices
        (``attention``, K x H x W uint8, in ``topk_slices`` order), its binarised regions
        (``attention_regions``) and every classified slice's scores (``slice_scores``).
        """
        vol: Volume = load_volume(source, spacing)
        t0 = time.perf_counter()
        if self._shm is None:
            inputs, outputs = self._scan_request(vol, return_masks, clinical, explain)
            result = self._call(lambda client, refused: self._infer(client, model, inputs, outputs, refused))
            return self._diagnosis(result, vol, t0)
        shm = self._shm
        with shm.lock:
            inputs, outputs = self._scan_request(vol, return_masks, clinical, explain)

            def infer(client: Any, refused: int) -> Any:
                shm.register(client)
                return self._infer(client, model, inputs, outputs, refused)

            return self._diagnosis(self._call(infer), vol, t0)

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
        result = self._call(lambda c, _: c.infer(C.PROGRESSION_GPR.name, inputs))
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
