"""Nothing is unpickled from outside: a static check over the package and the Triton models."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*(ROOT / "src" / "covidet").rglob("*.py"), *(ROOT / "model_repository").rglob("*.py")]


def test_sources_were_found() -> None:
    assert len(SOURCES) > 20


def test_no_pickle_loading() -> None:
    offenders = []
    for path in SOURCES:
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\bpickle\.loads?\(", r"\bjoblib\.load\(",
                        r"allow_pickle\s*=\s*True", r"\bdill\b", r"\bcloudpickle\b"):  # fmt: skip
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
        for call in re.finditer(r"torch\.load\((.*)", text):
            if "weights_only=True" not in call.group(1):
                offenders.append(f"{path.relative_to(ROOT)}: torch.load without weights_only=True")
    assert not offenders, offenders
