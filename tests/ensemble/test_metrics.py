"""The pipeline's custom metrics, against a stand-in for Triton's pb_utils.MetricFamily."""

from __future__ import annotations

from typing import Any, ClassVar

from covidet.ensemble import PipelineMetrics, admission_capacity


class _Family:
    COUNTER, HISTOGRAM, GAUGE = "counter", "histogram", "gauge"
    made: ClassVar[dict[str, _Family]] = {}

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.metrics = name, {}
        _Family.made[name] = self

    def Metric(self, labels: dict[str, str], buckets: Any = None) -> _Metric:
        metric = _Metric()
        self.metrics[tuple(sorted(labels.items()))] = metric
        return metric


class _Metric:
    def __init__(self) -> None:
        self.value = 0.0

    def increment(self, n: float) -> None:
        self.value += n

    def observe(self, v: float) -> None:
        self.value += 1

    def set(self, v: float) -> None:
        self.value = v


class _PbUtils:
    MetricFamily = _Family


class _Logger:
    warnings: ClassVar[list[str]] = []

    def log_warn(self, text: str) -> None:
        self.warnings.append(text)


def test_quality_flags_are_counted_by_code_and_severity() -> None:
    metrics = PipelineMetrics(_PbUtils(), _Logger())
    assert metrics.enabled
    metrics.quality([("LUNG_NOT_COVERED", "error"), ("DEMO_MODELS", "warning")])
    metrics.quality([("DEMO_MODELS", "warning")])
    family = _Family.made["covidet_quality_flags_total"]
    values = {dict(k)["code"]: m.value for k, m in family.metrics.items()}
    assert values == {"LUNG_NOT_COVERED": 1, "DEMO_MODELS": 2}
    assert {dict(k)["severity"] for k in family.metrics} == {"error", "warning"}


def test_scans_and_stages_are_counted_by_their_label() -> None:
    metrics = PipelineMetrics(_PbUtils(), _Logger())
    metrics.scan("ok", slices=40, timings={"lung": 0.5, "total": 1.0})
    metrics.scan("ok", slices=20, timings={"total": 2.0})
    metrics.scan("invalid")
    scans = {dict(k)["result"]: m.value for k, m in _Family.made["covidet_scans_total"].metrics.items()}
    stages = {dict(k)["stage"]: m.value for k, m in _Family.made["covidet_stage_seconds"].metrics.items()}
    assert scans == {"ok": 2, "invalid": 1}
    assert stages == {"lung": 1, "total": 2}  # observations


def test_admission_refusals_and_capacity_are_published() -> None:
    metrics = PipelineMetrics(_PbUtils(), _Logger())
    metrics.admission_refused(0)
    metrics.admission_refused(3)
    metrics.admission_refused(2)
    assert _Family.made["covidet_admission_rejected_total"].metrics[()].value == 5
    metrics.admission_capacity(2, 4)
    capacity = _Family.made["covidet_admission_capacity"].metrics
    assert {dict(k)["state"]: m.value for k, m in capacity.items()} == {"processing": 2, "waiting": 4}


def test_the_admission_capacity_is_read_from_the_models_configuration() -> None:
    config = {
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "dynamic_batching": {"default_queue_policy": {"max_queue_size": 4}},
    }
    assert admission_capacity(config) == (2, 4)
    assert admission_capacity({}) == (1, 0)  # one instance, no bound
