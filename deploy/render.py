#!/usr/bin/env python3
"""Render the covidet Helm chart to plain Kubernetes manifests (no `helm` binary needed).

Uses Helm's own Go template engine through the `helm-python-sdk` wheel (Helm v4 SDK, bundled as a
shared library: ``pip install helm-python-sdk``), so the output is what ``helm template`` prints.

    python deploy/render.py                      # writes deploy/k8s/covidet.yaml (defaults below)
    python deploy/render.py -f my-values.yaml --set autoscaling.enabled=true -o -   # to stdout
    python deploy/render.py --check              # exit 1 if deploy/k8s/covidet.yaml is stale

The committed ``deploy/k8s/covidet.yaml`` is rendered with `K8S_VALUES`: the chart's defaults
except that the admin-token Secret is expected to exist already (a plain manifest cannot keep a
randomly generated token across re-applies). Create it first, see deploy/README.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE / "helm" / "covidet"
K8S_OUT = HERE / "k8s" / "covidet.yaml"
#: Values for the committed plain manifests (on top of the chart's values.yaml).
K8S_VALUES: dict[str, Any] = {"security": {"restrictedApis": {"existingSecret": "covidet-admin"}}}

__all__ = ["CHART", "K8S_OUT", "K8S_VALUES", "deep_merge", "render_chart", "to_yaml"]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base`` (nested mappings merged, the rest replaced)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render_chart(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "covidet",
    namespace: str = "default",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The chart's Kubernetes objects for ``values`` (merged over values.yaml), in template order."""
    try:
        import helm_python as helm
    except ImportError as exc:
        raise SystemExit(
            "rendering the chart needs the helm-python-sdk package (Helm's template engine as a "
            "library): pip install helm-python-sdk; or use `helm template` if helm is installed"
        ) from exc
    loaded = helm.Chart.load(str(chart))
    helm.validate_release_name(release)
    rendered = loaded.render(dict(values or {}), name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                objects.append(doc)
    return objects


def to_yaml(objects: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """Multi-document YAML, keys in template order."""
    docs = [yaml.safe_dump(dict(o), sort_keys=False, default_flow_style=False) for o in objects]
    return header + "---\n" + "---\n".join(docs)


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected key.path=value, e.g. autoscaling.enabled=true")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--values", action="append", type=Path, default=[], help="values file")
    p.add_argument("--set", action="append", default=[], help="key.path=value (YAML value)")
    p.add_argument("--release", default="covidet")
    p.add_argument("--namespace", default="default")
    p.add_argument("-o", "--out", default=None, help=f"output file or - (default {K8S_OUT})")
    p.add_argument("--check", action="store_true", help="compare with the output file instead")
    args = p.parse_args(argv)

    custom = bool(args.values or args.set)
    values: dict[str, Any] = {} if custom else dict(K8S_VALUES)
    for f in args.values:
        values = deep_merge(values, yaml.safe_load(f.read_text()) or {})
    values = deep_merge(values, _parse_set(args.set))
    header = (
        "# Rendered from deploy/helm/covidet by deploy/render.py; do not edit by hand.\n"
        "# Needs the Secret covidet-admin (key: token) in the namespace; see deploy/README.md.\n"
        if not custom
        else ""
    )
    text = to_yaml(render_chart(values, release=args.release, namespace=args.namespace), header)
    out = Path(args.out) if args.out and args.out != "-" else (None if args.out == "-" else K8S_OUT)
    if args.check:
        target = out or K8S_OUT
        if not target.is_file() or target.read_text() != text:
            print(f"{target} is stale: run python deploy/render.py", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
