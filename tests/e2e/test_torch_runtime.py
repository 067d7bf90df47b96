"""The gpu-torch profile's Triton path, run here on the CPU: torch runtime, DLPack in and out.

The repository is the gpu-torch rendering with its device switched to the CPU (no GPU here), so
the slice models' torch runtime, its DLPack hand-over, the pipeline's torch tensors through BLS
(`device_tensors`) and the GRU's torch runner all run inside Triton's Python backend; the answer
must match the float ONNX Runtime repository's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet.ensemble import FALLBACK_WARNING, PIPELINE_CONFIG_FILE
from covidet.export._render import render_repository

pytestmark = pytest.mark.e2e


def _on_cpu(repo: Path) -> None:
    for config in repo.glob("*/config.pbtxt"):
        text = config.read_text()
        assert 'string_value: "cuda"' in text or "KIND_GPU" not in text, config
        config.write_text(
            text.replace('string_value: "cuda"', 'string_value: "cpu"').replace("KIND_GPU", "KIND_CPU")
        )
    # the pipeline's pre/post device too: its torch path runs here on the CPU
    pipeline = repo / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE
    config = json.loads(pipeline.read_text())
    assert config["device"] == "cuda"
    pipeline.write_text(json.dumps({**config, "device": "cpu"}))


def test_torch_runtime_serves_like_onnx(
    tmp_path: Path,
    repository: Path,
    phantoms: dict[str, Any],
    diagnose_served: Callable[..., Any],
    diagnose_in_process: Callable[..., dict[str, np.ndarray]],
) -> None:
    repo = render_repository("gpu-torch", tmp_path / "repo", torch_compile="none")  # eager: no compile time
    _on_cpu(repo)
    ph = phantoms["influenza"]
    log = tmp_path / "triton.log"
    served = diagnose_served(repo, ph, return_masks=True, server_log=log)
    # the slice tensors went through BLS as torch tensors (DLPack), never falling back to numpy
    assert json.loads((repo / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE).read_text())["device_tensors"]
    assert FALLBACK_WARNING not in log.read_text(errors="replace")
    ref = diagnose_in_process(repository, ph, return_masks=True)
    from covidet.metrics import dice

    assert served.lung_mask is not None and dice(served.lung_mask, ref["LUNG_MASK"]) > 0.999
    np.testing.assert_allclose(served.lung_volume_ml, float(ref["LUNG_VOLUME_ML"][0]), rtol=1e-3)
    np.testing.assert_allclose(served.lesion_ratio, float(ref["LESION_RATIO"][0]), atol=1e-3)
    probs = [served.class_probs[name] for name in C.CLASS_NAMES]
    np.testing.assert_allclose(probs, ref["CLASS_PROBS"], atol=1e-4)
    np.testing.assert_allclose(served.p_viral, float(ref["P_VIRAL"][0]), atol=1e-4)
