"""Triton Python-backend model `gru_fusion`: CoviDet GRU over one scan's slice features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from covidet import _contract as C
from covidet.ensemble import make_runner, run_sequence


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.runner = make_runner(params, Path(args["model_repository"]) / args["model_version"])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            feats = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            if feats.ndim != 2 or feats.shape[0] == 0:
                err = pb_utils.TritonError(
                    C.error_message(
                        C.ErrorCode.INVALID_INPUT,
                        f"FEATURES must be [slices, features] with at least one slice, got "
                        f"shape {list(feats.shape)}",
                    ),
                    pb_utils.TritonError.INVALID_ARG,
                )
                responses.append(pb_utils.InferenceResponse(error=err))
                continue
            probs = run_sequence(self.runner, feats)  # one request is one scan's sequence
            out = pb_utils.Tensor(self.output_name, probs.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
