"""The cpu-int8 profile served for real: Triton runs the int8 graphs and answers as in-process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet.client import Client
from covidet.serve import TritonServer
from covidet.serving import InProcessModels, PipelineConfig, ScanPipeline

pytestmark = pytest.mark.e2e


def test_int8_server_answers_like_in_process(int8_repository: Path, phantoms: dict[str, Any]) -> None:
    ph = phantoms["COVID-19"]
    server = TritonServer.on_free_ports(int8_repository)
    server.start()
    try:
        server.wait_ready(timeout=float(os.environ.get("COVIDET_TEST_READY_TIMEOUT", "300")))
        with Client(server.grpc_url, timeout_s=600) as client:
            served = client.diagnose(ph.hu, spacing=ph.spacing)
    finally:
        server.stop()
    models = InProcessModels(int8_repository)
    try:
        pipe = ScanPipeline(PipelineConfig.from_repository(int8_repository), models.infer)
        ref = asyncio.run(pipe.run(ph.hu, np.asarray(ph.spacing, np.float32)))
    finally:
        models.close()
    assert served.provenance[C.LUNG_SEG.name]["precision"] == "int8"
    assert served.provenance[C.SLICE_CLASSIFIER.name]["precision"] == "float32"
    # the same int8 graphs; thread counts differ (1 per instance served, 2 in-process)
    np.testing.assert_allclose(served.lung_volume_ml, float(ref["LUNG_VOLUME_ML"][0]), rtol=1e-3)
    np.testing.assert_allclose(served.lesion_ratio, float(ref["LESION_RATIO"][0]), atol=1e-3)
    probs = [served.class_probs[name] for name in C.CLASS_NAMES]
    np.testing.assert_allclose(probs, ref["CLASS_PROBS"], atol=1e-3)
    assert served.predicted_class == "COVID-19"
