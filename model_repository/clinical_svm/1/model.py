"""Triton Python-backend model `clinical_svm`: DL#3, clinical SVM fused with DL#2.

All logic lives in `covidet.clinical`; this file only adapts tensors. Without the optional
CLINICAL input, P_SVM is NaN and P_COVID_FUSED is the DL#2 probability unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from covidet import _contract as C
from covidet.clinical import ClinicalDataError, demo_model_path, identity, load_svm
from covidet.ensemble import with_step_model
from covidet.errors import InvalidInputError


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = Path(params.get("model_file", "").strip() or demo_model_path())
        if not path.is_absolute():
            path = Path(args["model_repository"]) / path
        # A missing, malformed or tampered file raises ModelFileError: the model fails to load.
        self.model = load_svm(path)
        # the answer says which SVM fused it, as PROVENANCE says which imaging models ran
        self.ident = identity(self.model)
        self.identity = np.array([json.dumps(self.ident, sort_keys=True).encode()], dtype=np.object_)
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"clinical_svm: loaded {path} (kernel {self.model.kernel}, "
            f"{len(self.model.support_vectors)} support vectors; {self.model.provenance})"
        )

    def _one(self, request: object) -> object:
        p_dl2 = pb_utils.get_input_tensor_by_name(request, "P_COVID_GIVEN_VIRAL").as_numpy()
        p_dl2 = np.asarray(p_dl2, dtype=np.float64).reshape(-1)
        if p_dl2.size != 1 or not np.isfinite(p_dl2[0]) or not 0.0 <= p_dl2[0] <= 1.0:
            raise ClinicalDataError(
                f"P_COVID_GIVEN_VIRAL must be one probability in [0, 1], got {p_dl2.tolist()}"
            )
        clinical = pb_utils.get_input_tensor_by_name(request, "CLINICAL")
        if clinical is None:
            p_svm, fused = np.nan, p_dl2[0]
        else:
            x = clinical.as_numpy().astype(np.float64).reshape(-1)
            p_svm = float(self.model.p_covid(x)[0])
            fused = float(self.model.fusion(p_dl2[0], p_svm))
        # the imaging step's flags, with a demo SVM named where it fused the answer
        quality = with_step_model(
            _text(request, "QUALITY"),
            _text(request, "PROVENANCE"),
            C.CLINICAL_SVM.name,
            self.ident,
            answered=clinical is not None,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("P_SVM", np.array([p_svm], dtype=np.float32)),
                pb_utils.Tensor("P_COVID_FUSED", np.array([fused], dtype=np.float32)),
                pb_utils.Tensor("SVM_PROVENANCE", self.identity),
                pb_utils.Tensor("QUALITY", np.array([quality], dtype=np.object_)),
            ]
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except InvalidInputError as exc:
                clinical = isinstance(exc, ClinicalDataError)
                code = C.ErrorCode.INVALID_CLINICAL if clinical else C.ErrorCode.INVALID_INPUT
                err = pb_utils.TritonError(
                    C.error_message(code, str(exc)), getattr(pb_utils.TritonError, code.triton_status)
                )
                responses.append(pb_utils.InferenceResponse(error=err))
        return responses


def _text(request: object, name: str) -> bytes | None:
    """A BYTES input's one value, or None where the request has none."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy().reshape(-1)
    if value.size != 1:
        raise InvalidInputError(f"{name} must hold one JSON value, got {value.size}")
    raw = value[0]
    return raw if isinstance(raw, bytes) else str(raw).encode()
