"""Triton Python-backend slice model (lung_seg, slice_classifier, slice_encoder, lesion_seg).

One file serves the four slice models; the repository rendering copies it into each model's
version folder. The dynamic batcher hands `execute` several requests (slices of several scans):
they are concatenated, run as one batch, and split back, one response per request.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from covidet.serving import make_runner


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.name = args["model_name"]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.runner = make_runner(params, version_dir)
        self.logger = pb_utils.Logger
        self.logger.log_info(f"{self.name}: runtime {params.get('runtime', 'onnxruntime')} ready")

    def execute(self, requests: list) -> list:
        arrays, responses = [], [None] * len(requests)
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            arrays.append(tensor.as_numpy())
        sizes = [a.shape[0] for a in arrays]
        try:
            batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            out = self.runner(np.ascontiguousarray(batch, dtype=np.float32))
        except Exception as exc:  # one failing batch fails its requests, the model keeps serving
            self.logger.log_error(f"{self.name}: batch of {sum(sizes)} slices failed: {exc!r}")
            err = pb_utils.TritonError(f"{self.name} failed: {exc}")
            return [pb_utils.InferenceResponse(error=err) for _ in requests]
        start = 0
        for i, n in enumerate(sizes):
            part = out[start : start + n].astype(self.output_dtype, copy=False)
            start += n
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.output_name, part)]
            )
        return responses

    def finalize(self) -> None:
        self.runner = None
