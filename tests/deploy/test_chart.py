"""The Helm chart, rendered by Helm's own engine (helm-python-sdk), and the committed manifests.

Every object is validated against the Kubernetes JSON schemas of `K8S_VERSION` in strict mode
(kubernetes-validate); the PodMonitor CRD, which those schemas do not cover, against a schema of
the fields we use (see `PODMONITOR_SCHEMA`).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from covidet import _contract as C
from covidet.server._security import restricted_api_args, tls_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHART = DEPLOY / "helm" / "covidet"
#: Kubernetes version whose JSON schemas (shipped by kubernetes-validate) the manifests must pass.
K8S_VERSION = "1.31.0"

#: The subset of the monitoring.coreos.com/v1 PodMonitor schema that the chart uses.
PODMONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}

TLS_AUTOSCALING = {
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
    "security": {"tls": {"enabled": True, "secretName": "covidet-tls", "mutual": True}},
    "engineCache": {"existingClaim": "covidet-engines"},
    "checkpoints": {"existingClaim": "covidet-checkpoints"},
}
CPU_MINIMAL = {
    "profile": "cpu",
    "security": {"restrictedApis": {"enabled": False}},
    "metrics": {"podMonitor": {"enabled": False}},
    "podDisruptionBudget": {"enabled": False},
    "serviceAccount": {"create": False},
}
VARIANTS = {"default": {}, "tls+autoscaling": TLS_AUTOSCALING, "cpu-minimal": CPU_MINIMAL}


def validate(obj: dict[str, Any]) -> None:
    """Strict Kubernetes schema validation; the one CRD against our own schema."""
    if obj["kind"] == "PodMonitor":
        jsonschema.validate(obj, PODMONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), f"one object per kind expected, got {kinds}"
    return {o["kind"]: o for o in objects}


@pytest.fixture(scope="module")
def rendered(render: ModuleType) -> dict[str, dict[str, dict[str, Any]]]:
    pytest.importorskip("helm_python", reason="helm-python-sdk (Helm's template engine) missing")
    return {name: by_kind(render.render_chart(values)) for name, values in VARIANTS.items()}


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def volumes(objs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}


# --- Helm: lint, schema validation of every object ------------------------------------------------


def test_chart_lints_strict() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    for values in VARIANTS.values():
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{K8S_VERSION}")
        assert report["errors"] == [] and report["messages"] == [], report


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_validates(rendered: dict, variant: str) -> None:
    objs = rendered[variant]
    expected = {"Deployment", "Service"}
    if variant != "cpu-minimal":
        expected |= {"ServiceAccount", "PodDisruptionBudget", "PodMonitor", "Secret"}
    if variant == "tls+autoscaling":
        expected.add("HorizontalPodAutoscaler")
    assert set(objs) == expected
    for obj in objs.values():
        validate(obj)


def test_validation_really_rejects(rendered: dict) -> None:
    """The validators are not vacuous: a typo or a wrong type fails."""
    deployment = yaml.safe_load(yaml.safe_dump(rendered["default"]["Deployment"]))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")  # unknown field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    service = yaml.safe_load(yaml.safe_dump(rendered["default"]["Service"]))
    service["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(service)
    podmonitor = yaml.safe_load(yaml.safe_dump(rendered["default"]["PodMonitor"]))
    podmonitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(podmonitor)


# --- what the Deployment says ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "tls+autoscaling"])
def test_probes_ports_gpu(rendered: dict, variant: str) -> None:
    objs = rendered[variant]
    c = container(objs)
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/live"
    # the TensorRT engine build is allowed at least 15 minutes
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 900
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["COVIDET_HTTP_PORT"], env["COVIDET_GRPC_PORT"], env["COVIDET_METRICS_PORT"]) == (
        "8000",
        "8001",
        "8002",
    )
    assert env["COVIDET_PROFILE"] == "gpu" and env["COVIDET_HOST"] == "0.0.0.0"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    svc = {p["name"]: (p["port"], p["targetPort"]) for p in objs["Service"]["spec"]["ports"]}
    assert svc == {"http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    assert objs["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_cpu_profile_requests_no_gpu(rendered: dict) -> None:
    c = container(rendered["cpu-minimal"])
    assert "nvidia.com/gpu" not in c["resources"]["requests"]
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert "args" not in c or not any("restricted" in a for a in c["args"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_non_root_and_locked_down(rendered: dict, variant: str) -> None:
    objs = rendered[variant]
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False
    sc = container(objs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    # a read-only root needs writable mounts where the server writes
    mounts = {m["mountPath"]: m["name"] for m in container(objs)["volumeMounts"]}
    assert {"/dev/shm", "/tmp", "/var/cache/covidet"} <= set(mounts)


def test_shm_memory_backed_and_sized(render: ModuleType) -> None:
    pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    objs = by_kind(render.render_chart({"shm": {"sizeLimit": "6Gi"}}))
    shm = volumes(objs)["dshm"]["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "6Gi"}


def test_graceful_shutdown(rendered: dict) -> None:
    objs = rendered["default"]
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    c = container(objs)
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = int({e["name"]: e.get("value") for e in c["env"]}["COVIDET_EXIT_TIMEOUT_S"])
    assert sleep > 0 and drain > 0
    assert sleep + drain < pod["terminationGracePeriodSeconds"]
    assert objs["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_restricted_api_args_from_secret(rendered: dict) -> None:
    c = container(rendered["default"])
    token_env = next(e for e in c["env"] if e["name"] == "COVIDET_ADMIN_TOKEN")
    ref = token_env["valueFrom"]["secretKeyRef"]
    secret = rendered["default"]["Secret"]
    assert ref == {"name": secret["metadata"]["name"], "key": "token"}
    assert len(secret["data"]["token"]) > 40  # random, base64
    # Kubernetes substitutes $(COVIDET_ADMIN_TOKEN); the result is what covidet's builder makes
    token = "T" * 48
    args = [a.replace("$(COVIDET_ADMIN_TOKEN)", token) for a in c["args"]]
    assert restricted_api_args("covidet-admin-key", token) == [a for a in args if "restricted" in a]
    assert "--metrics-config=summary_latencies=true" in c["args"]


def test_tls_and_autoscaling(rendered: dict) -> None:
    objs = rendered["tls+autoscaling"]
    c = container(objs)
    expected = tls_args(
        "/etc/covidet/tls/tls.crt",
        "/etc/covidet/tls/tls.key",
        "/etc/covidet/tls/ca.crt",
        mutual=True,
        check_files=False,
    )
    assert [a for a in c["args"] if a.startswith("--grpc-") and "restricted" not in a] == expected
    assert volumes(objs)["tls"]["secret"]["secretName"] == "covidet-tls"
    assert {"mountPath": "/etc/covidet/tls", "name": "tls", "readOnly": True} in c["volumeMounts"]
    assert volumes(objs)["engine-cache"]["persistentVolumeClaim"]["claimName"] == "covidet-engines"
    assert "replicas" not in objs["Deployment"]["spec"]  # the HPA owns the count
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == objs["Deployment"]["metadata"]["name"]
    # the queue time and the admission bound's fill: both served by the adapter's rules
    assert [m["pods"]["metric"]["name"] for m in hpa["metrics"]] == [
        "covidet_queue_us_per_request",
        "covidet_admission_utilisation",
    ]
    assert {m["pods"]["metric"]["name"] for m in hpa["metrics"]} <= _adapter_metric_names()
    assert all(m["type"] == "Pods" and m["pods"]["target"]["type"] == "AverageValue" for m in hpa["metrics"])
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)


def _adapter_metric_names() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    return {str(rule["name"]["as"]) for rule in rules["rules"]["custom"]}


def test_bad_values_are_refused(render: ModuleType) -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    with pytest.raises(helm.HelmError, match="secretName"):
        render.render_chart({"security": {"tls": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="profile"):
        render.render_chart({"profile": "tpu"})
    with pytest.raises(helm.HelmError, match="header"):
        render.render_chart({"security": {"restrictedApis": {"header": "Bad Header"}}})
    with pytest.raises(helm.HelmError, match="failureThreshold"):
        render.render_chart({"probes": {"startup": {"failureThreshold": 3}}})


def test_extra_env_reaches_the_server_container(render: ModuleType) -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    extra = [
        {"name": "MALLOC_MMAP_THRESHOLD_", "value": "1048576"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    env = container(by_kind(render.render_chart({"extraEnv": extra})))["env"]
    assert env[-2:] == extra and {e["name"] for e in env} >= {"COVIDET_PROFILE", "MALLOC_MMAP_THRESHOLD_"}
    with pytest.raises(helm.HelmError, match="extraEnv"):
        render.render_chart({"extraEnv": [{"name": "bad name", "value": "1"}]})


def test_labels_select_the_pods(rendered: dict) -> None:
    objs = rendered["default"]
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        objs["Deployment"]["spec"]["selector"]["matchLabels"],
        objs["Service"]["spec"]["selector"],
        objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        objs["PodMonitor"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()


# --- the committed plain manifests (validated with or without the Helm SDK) -------------------------


def test_committed_manifests_validate() -> None:
    objects = [o for o in yaml.safe_load_all((DEPLOY / "k8s" / "covidet.yaml").read_text()) if o]
    objs = by_kind(objects)
    assert "Secret" not in objs  # the admin token Secret is created by the operator
    for obj in objects:
        validate(obj)
    assert container(objs)["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_committed_manifests_are_current(render: ModuleType) -> None:
    pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    assert render.main(["--check"]) == 0, "deploy/k8s/covidet.yaml is stale: run python deploy/render.py"


def test_contract_names_in_adapter_rule() -> None:
    text = (DEPLOY / "prometheus-adapter" / "rules.yaml").read_text()
    assert f'model="{C.PIPELINE.name}"' in text


def test_chart_profiles_are_covidets(render: ModuleType) -> None:
    """The chart's schema accepts exactly covidet's profiles; CPU profiles request no GPU."""
    from covidet.export._render import CPU_PROFILES, PROFILES

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert sorted(schema["properties"]["profile"]["enum"]) == sorted(PROFILES)
    pytest.importorskip("helm_python", reason="helm-python-sdk missing")
    for profile in PROFILES:
        c = container(by_kind(render.render_chart({"profile": profile})))
        assert ("nvidia.com/gpu" in c["resources"].get("limits", {})) == (profile not in CPU_PROFILES), (
            profile
        )
