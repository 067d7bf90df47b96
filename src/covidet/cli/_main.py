"""The `covidet` command line: serve, diagnose, demo, phantom, export, train-demo, evaluate-demo,
init-checkpoints, bench, soak and the clinical / progression tools."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from covidet.errors import CovidetError

__all__ = ["main"]

#: The single dispatch table: subcommand -> (module, function, help). Modules are imported only
#: when their command runs, so `covidet diagnose` never imports torch.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("covidet.server", "serve_main", "render the model repository and run Triton"),
    "diagnose": ("covidet.cli._diagnose", "main_diagnose", "diagnose scans through a running server"),
    "monitor": ("covidet.cli._diagnose", "main_monitor", "forecast a patient's course from serial scans"),
    "deidentify": (
        "covidet.cli._diagnose",
        "main_deidentify",
        "write a de-identified copy of a DICOM series",
    ),
    "demo": ("covidet.cli._demo", "main_demo", "diagnose phantom DICOM series end to end"),
    "phantom": ("covidet.cli._phantom", "main", "write synthetic chest CT phantoms"),
    "export": ("covidet.cli._export", "main_export", "export checkpoints to ONNX / TensorRT"),
    "train-demo": ("covidet.train", "main_train_demo", "train the demo checkpoints on phantoms"),
    "evaluate-demo": ("covidet.train", "main_evaluate_demo", "measure Dice/accuracy on phantoms"),
    "evaluate": ("covidet.cli._evaluate", "main_evaluate", "measure the served models on labelled scans"),
    "init-checkpoints": (
        "covidet.train",
        "main_init_checkpoints",
        "untrained full-size checkpoints (random weights) for benchmarks",
    ),
    "bench": ("covidet.bench", "main", "load-test a server (same as benchmarks/bench.py)"),
    "soak": ("covidet.bench._soak", "main_soak", "bounded soak: failures, latency drift, memory"),
    "train-svm": ("covidet.cli._clinical", "main_train_svm", "train the clinical SVM (DL#3) from a CSV"),
    "clinical-demo": ("covidet.cli._clinical", "main_make_clinical", "write synthetic clinical data"),
    "eval-progression": (
        "covidet.cli._progression",
        "main_eval_progression",
        "evaluate GPR forecasts",
    ),
    "train-course-prior": (
        "covidet.cli._progression",
        "main_train_course_prior",
        "learn the GPR's course prior from earlier patients",
    ),
}


#: The package extra each command needs (pyproject.toml), where it is not the server's.
_EXTRAS: dict[str, str] = {
    "diagnose": "client",
    "monitor": "client",
    "deidentify": "client",
    "evaluate": "evaluate",
    "export": "export",
}


def _load(name: str) -> Callable[[list[str]], int]:
    module, func, _ = _COMMANDS[name]
    try:
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]
    except ImportError as exc:
        extra = _EXTRAS.get(name, "server")
        raise CovidetError(
            f"`covidet {name}` is not available in this installation ({exc.name} is missing): "
            f"install the {extra} extra, pip install 'covidet[{extra}]'"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="covidet",
        description="covidet: COVID-19 chest-CT inference on Triton (research software, not a "
        "medical device).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_) in _COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in _COMMANDS:
            parser.parse_args(argv)  # prints the usage error
            return 2
        return int(_load(command)(rest) or 0)
    except CovidetError as exc:
        print(f"covidet {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
