"""Custom Prometheus metrics of the pipeline, exported beside Triton's own on its metrics port."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SLICE_BUCKETS", "STAGE_BUCKETS", "PipelineMetrics", "admission_capacity"]

SLICE_BUCKETS = [1.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0]
STAGE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


class PipelineMetrics:
    """covidet_scans_total{result}, covidet_slices_per_scan, covidet_stage_seconds{stage},
    covidet_quality_flags_total{code,severity} (the QUALITY flags of the answers),
    covidet_device_fallbacks_total (an instance left the GPU path for slice tensors: `BlsInfer`),
    covidet_admission_rejected_total (refusals of the admission bound that covidet clients met
    before a scan was admitted: `covidet._contract.REFUSED_PARAMETER`) and
    covidet_admission_capacity{state} (scans the bound lets the server hold: processing, waiting).

    Built on ``pb_utils.MetricFamily`` (Triton's Python-backend custom metrics). Where the backend
    lacks a metric kind the metrics are disabled with one warning; serving is never affected.
    """

    def __init__(self, pb_utils: Any, logger: Any) -> None:
        self._scans: dict[Any, Any] = {}
        self._stages: dict[Any, Any] = {}
        self._flags: dict[Any, Any] = {}
        self._capacity: dict[Any, Any] = {}
        self.enabled = False
        self._logger = logger
        try:
            mf = pb_utils.MetricFamily
            self._scan_family = mf(name="covidet_scans_total", description="scans by result", kind=mf.COUNTER)
            # Families must outlive their metrics: keep references to all of them.
            self._slice_family = mf(
                name="covidet_slices_per_scan", description="slices per scan", kind=mf.HISTOGRAM
            )
            self._slices = self._slice_family.Metric(labels={}, buckets=SLICE_BUCKETS)
            self._stage_family = mf(
                name="covidet_stage_seconds", description="wall time per pipeline stage", kind=mf.HISTOGRAM
            )
            self._fallback_family = mf(
                name="covidet_device_fallbacks_total",
                description="times a pipeline instance fell back from GPU to host slice tensors",
                kind=mf.COUNTER,
            )
            self._fallbacks = self._fallback_family.Metric(labels={})
            self._flag_family = mf(
                name="covidet_quality_flags_total",
                description="quality flags of the answers, by code and severity",
                kind=mf.COUNTER,
            )
            self._rejected_family = mf(
                name="covidet_admission_rejected_total",
                description="admission refusals (server at its memory budget) that covidet clients "
                "retried, counted when the scan is admitted",
                kind=mf.COUNTER,
            )
            self._rejected = self._rejected_family.Metric(labels={})
            self._capacity_family = mf(
                name="covidet_admission_capacity",
                description="scans the admission bound lets the server hold at once, by state",
                kind=mf.GAUGE,
            )
            self.enabled = True
        except Exception as exc:  # an older backend without histograms
            logger.log_warn(f"covidet_pipeline: custom metrics disabled ({exc!r})")

    def scan(self, result: str, *, slices: int = 0, timings: dict[str, float] | None = None) -> None:
        """Count one scan; a metrics failure is logged once and never fails the request."""
        self._safely(lambda: self._record(result, slices, timings))

    def quality(self, flags: Iterable[tuple[str, str]]) -> None:
        """Count the (code, severity) of each quality flag of one answer."""
        self._safely(lambda: self._count_flags(flags))

    def _count_flags(self, flags: Iterable[tuple[str, str]]) -> None:
        for code, severity in flags:
            _labelled(self._flags, self._flag_family, code=code, severity=severity).increment(1)

    def admission_refused(self, count: int) -> None:
        """Count the refusals an admitted scan reports having met (0: nothing to count)."""
        if count > 0:
            self._safely(lambda: self._rejected.increment(count))

    def admission_capacity(self, processing: int, waiting: int) -> None:
        """Publish the admission bound: scans processed at once (instances) and scans that may wait."""

        def publish() -> None:
            for state, value in (("processing", processing), ("waiting", waiting)):
                _labelled(self._capacity, self._capacity_family, state=state).set(float(value))

        self._safely(publish)

    def device_fallback(self) -> None:
        """Count one switch of an instance's slice tensors from the device to the host."""
        self._safely(lambda: self._fallbacks.increment(1))

    def _safely(self, update: Callable[[], object]) -> None:
        """Run ``update`` while the metrics are enabled; its failure disables them, with one warning."""
        if not self.enabled:
            return
        try:
            update()
        except Exception as exc:
            self.enabled = False
            self._logger.log_warn(f"covidet_pipeline: custom metrics disabled ({exc!r})")

    def _record(self, result: str, slices: int, timings: dict[str, float] | None) -> None:
        _labelled(self._scans, self._scan_family, result=result).increment(1)
        if slices:
            self._slices.observe(float(slices))
        for stage, seconds in (timings or {}).items():
            stage_metric = _labelled(self._stages, self._stage_family, STAGE_BUCKETS, stage=stage)
            stage_metric.observe(float(seconds))


def _labelled(cache: dict[Any, Any], family: Any, buckets: list[float] | None = None, **labels: str) -> Any:
    """The metric of ``family`` with ``labels``, made on first use and kept in ``cache``."""
    key = tuple(labels.values())
    if key not in cache:
        kwargs = {"buckets": buckets} if buckets is not None else {}
        cache[key] = family.Metric(labels=labels, **kwargs)
    return cache[key]


def admission_capacity(model_config: dict[str, Any]) -> tuple[int, int]:
    """(instances, queue bound) of a model from the configuration Triton hands its ``initialize``:
    the scans it processes at once and those that may wait (0: unbounded)."""
    instances = sum(int(group.get("count", 1)) for group in model_config.get("instance_group", [])) or 1
    policy = model_config.get("dynamic_batching", {}).get("default_queue_policy", {})
    return instances, int(policy.get("max_queue_size", 0))
