"""Grafana dashboard, Prometheus alerts and the prometheus-adapter rule: structure and metric names.

Every PromQL expression may only reference metrics from the known lists below; the Triton ones
are checked against a real Triton 2.51 server's /metrics (GPU metrics need a GPU and are skipped).
"""

from __future__ import annotations

import json
import re
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

#: Triton's own metrics that any server exposes (CPU build included).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
    "nv_inference_request_summary_us",  # with --metrics-config=summary_latencies=true
    "nv_cpu_utilization",
    "nv_cpu_memory_used_bytes",
    "nv_cpu_memory_total_bytes",
}
#: Triton's GPU metrics (only where NVML sees a GPU).
TRITON_GPU_METRICS = {
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_power_usage",
}
#: covidet's pipeline metrics (pb_utils.MetricFamily in covidet_pipeline); histograms expose
#: <name>_bucket/_sum/_count.
COVIDET_COUNTERS = {
    "covidet_scans_total",
    "covidet_device_fallbacks_total",
    "covidet_admission_rejected_total",
}
COVIDET_GAUGES = {"covidet_admission_capacity"}
COVIDET_HISTOGRAMS = {"covidet_slices_per_scan", "covidet_stage_seconds"}
#: Prometheus' scrape health and kube-state-metrics.
CLUSTER_METRICS = {"up", "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, labels, keywords, numbers removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end() :].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in COVIDET_HISTOGRAMS:
            return name[: -len(suffix)]
    return name


KNOWN = (
    TRITON_METRICS
    | TRITON_GPU_METRICS
    | COVIDET_COUNTERS
    | COVIDET_GAUGES
    | COVIDET_HISTOGRAMS
    | CLUSTER_METRICS
)


def check_expr(expr: str, where: str) -> set[str]:
    assert expr.count("(") == expr.count(")"), f"{where}: unbalanced parentheses in {expr!r}"
    assert expr.count("{") == expr.count("}") and expr.count("[") == expr.count("]"), where
    names = {base_name(n) for n in metric_names(expr)}
    assert names, f"{where}: no metric referenced in {expr!r}"
    unknown = names - KNOWN
    assert not unknown, f"{where}: unknown metric(s) {sorted(unknown)} in {expr!r}"
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(covidet_stage_seconds_bucket{stage="total"}'
        "[$__rate_interval]))) / clamp_min(sum(rate(nv_inference_count[5m])), 1e-9) > bool 0.5"
    )
    assert metric_names(expr) == {"covidet_stage_seconds_bucket", "nv_inference_count"}
    with pytest.raises(AssertionError, match="unknown metric"):
        check_expr("rate(nv_inference_made_up_total[5m])", "test")


# --- Grafana ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "covidet-dashboard.json").read_text())  # type: ignore[no-any-return]


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= variables
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], panel["title"]


def test_every_dashboard_expr_uses_known_metrics(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for title, expr in dashboard_exprs(dashboard):
        used |= check_expr(expr, f"panel {title!r}")
    # what the dashboard must show
    required = {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "covidet_scans_total",
        "covidet_slices_per_scan",
        "covidet_stage_seconds",
    }
    assert required <= used, f"missing from the dashboard: {sorted(required - used)}"


# --- alerts and the adapter rule -------------------------------------------------------------------

RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "for", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]+$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                            "properties": {"severity": {"enum": ["warning", "critical"]}},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary", "description"],
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_alerts() -> None:
    rule = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    jsonschema.validate(rule, RULE_SCHEMA)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "CovidetHighFailureRate",
        "CovidetQueueTimeHigh",
        "CovidetReplicaDown",
        "CovidetAdmissionRefusing",
    } <= set(alerts)
    for name, r in alerts.items():
        check_expr(r["expr"], f"alert {name}")
    assert "nv_inference_request_failure" in alerts["CovidetHighFailureRate"]["expr"]
    assert "nv_inference_queue_duration_us" in alerts["CovidetQueueTimeHigh"]["expr"]
    assert alerts["CovidetReplicaDown"]["labels"]["severity"] == "critical"


#: Each adapter rule: the metric it serves -> (the series it matches, the metrics its query reads).
ADAPTER_RULES = {
    "covidet_queue_us_per_request": (
        "nv_inference_queue_duration_us",
        {"nv_inference_queue_duration_us", "nv_inference_request_success"},
    ),
    "covidet_admission_utilisation": (
        "nv_inference_pending_request_count",
        {"nv_inference_pending_request_count", "covidet_admission_capacity"},
    ),
}


def test_adapter_rules() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    assert rules["rules"]["default"] is False
    served = {rule["name"]["as"]: rule for rule in rules["rules"]["custom"]}
    assert set(served) == set(ADAPTER_RULES)
    for name, rule in served.items():
        series, reads = ADAPTER_RULES[name]
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        query = rule["metricsQuery"]
        assert "<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query
        names = check_expr(query.replace("<<.LabelMatchers>>,", "").replace("<<.GroupBy>>", "pod"), name)
        assert names == reads
        assert re.match(rule["name"]["matches"], series)
        assert rule["seriesQuery"].startswith(series + "{")
    values = yaml.safe_load((DEPLOY / "helm" / "covidet" / "values.yaml").read_text())
    assert values["autoscaling"]["metricName"] in served


# --- the names against a real Triton ----------------------------------------------------------------

_MODEL = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(
                r, "X").as_numpy())]) for r in requests]
    """
)
_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 8
input { name: "X" data_type: TYPE_FP32 dims: [ 2 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }
dynamic_batching { }
"""


def test_triton_exposes_the_metrics_we_query(tmp_path: Path, dashboard: dict[str, Any]) -> None:
    try:
        from covidet.server import TritonServer, find_tritonserver

        find_tritonserver()
    except Exception as exc:
        pytest.skip(f"no Triton server binary: {exc}")
    import tritonclient.http as httpclient
    from prometheus_client.parser import text_string_to_metric_families

    (tmp_path / "echo" / "1").mkdir(parents=True)
    (tmp_path / "echo" / "1" / "model.py").write_text(_MODEL)
    (tmp_path / "echo" / "config.pbtxt").write_text(_CONFIG)
    server = TritonServer.on_free_ports(
        tmp_path,
        extra_args=["--metrics-config=summary_latencies=true", "--metrics-interval-ms=200"],
    )
    with server:
        server.wait_ready(model="echo", timeout=120)
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("X", [1, 2], "FP32")
        inp.set_data_from_numpy(np.ones((1, 2), np.float32))
        for _ in range(3):
            client.infer("echo", [inp])
        client.close()
        # Triton counts a request after it has sent the response: poll (bounded) until all 3 are in
        deadline = time.monotonic() + 30.0
        while True:
            with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
                text = r.read().decode()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            counted = families.get("nv_inference_request_success")
            done = counted is not None and [
                s.value for s in counted.samples if s.labels.get("model") == "echo"
            ] == [3]
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    # prometheus_client strips a counter's _total; Triton's counters have no such suffix
    exposed = set(families) | {s.name for f in families.values() for s in f.samples}

    used: set[str] = set()
    for _, expr in dashboard_exprs(dashboard):
        used |= {base_name(n) for n in metric_names(expr)}
    rule = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    adapter = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    exprs += [r["metricsQuery"].replace("<<.LabelMatchers>>,", "") for r in adapter["rules"]["custom"]]
    for expr in exprs:
        used |= {base_name(n) for n in metric_names(expr)}
    triton_used = {n for n in used if n.startswith("nv_") and n not in TRITON_GPU_METRICS}
    assert triton_used <= TRITON_METRICS
    missing = triton_used - exposed
    assert not missing, f"Triton does not expose {sorted(missing)}"
    # the labels the queries group by
    success = [s for s in families["nv_inference_request_success"].samples if s.labels.get("model") == "echo"]
    assert success and success[0].value == 3
    quantiles = {
        s.labels.get("quantile")
        for s in families["nv_inference_request_summary_us"].samples
        if s.labels.get("model") == "echo"
    }
    assert {"0.5", "0.99"} <= quantiles
