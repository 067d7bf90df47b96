"""The Triton Python-backend slice model (lung_seg, slice_classifier, slice_encoder, lesion_seg).

Each slice model's ``1/model.py`` subclasses `SliceModel` and sets `SliceModel.pb` to Triton's
``triton_python_backend_utils`` module; everything else is here, testable with a stand-in for
that module. The dynamic batcher hands `SliceModel.execute` several requests (slices of several
scans): they are concatenated, run as one batch, and split back, one response per request, each
with the outputs its request asked for (the classifier's class maps only for the requests that
ask: the pipeline asks when a scan is to be explained). The torch runtime takes its inputs and
gives its outputs by DLPack (no numpy round trip, and an input that Triton placed on the GPU stays
there); ONNX Runtime takes numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from covidet.ensemble._runtime import TorchRunner, make_runner

__all__ = ["SliceModel"]


class SliceModel:
    """Triton's ``TritonPythonModel`` protocol for one slice model, on any runtime of
    `covidet.ensemble.make_runner`.

    ``pb_utils``: Triton's ``triton_python_backend_utils`` module (or a stand-in); a subclass may
    set the class attribute `pb` instead, since Triton builds the model without arguments.
    """

    #: Triton's ``triton_python_backend_utils`` module (set by the model.py subclass).
    pb: Any = None

    def __init__(self, pb_utils: Any = None) -> None:
        if pb_utils is not None:
            self.pb = pb_utils
        if self.pb is None:
            raise TypeError("SliceModel needs Triton's pb_utils module: set the `pb` class attribute")

    def initialize(self, args: dict) -> None:
        pb = self.pb
        config = json.loads(args["model_config"])
        self.name = args["model_name"]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        #: the config's outputs in order: the runtime's outputs by position
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = [pb.triton_string_to_numpy(o["data_type"]) for o in config["output"]]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.runner: Any = make_runner(params, version_dir)
        self.dlpack = isinstance(self.runner, TorchRunner)
        self.logger = pb.Logger
        self.logger.log_info(f"{self.name}: runtime {params.get('runtime', 'onnxruntime')} ready")

    def execute(self, requests: list) -> list:
        pb = self.pb
        tensors = [pb.get_input_tensor_by_name(r, self.input_name) for r in requests]
        # each request's outputs by position; the batch computes those any of them asks for
        wanted = [self._wanted(r) for r in requests]
        which = sorted(set().union(*wanted))
        try:
            parts = self._run_dlpack(tensors, which) if self.dlpack else self._run_numpy(tensors, which)
        except Exception as exc:  # one failing batch fails its requests, the model keeps serving
            self.logger.log_error(f"{self.name}: batch of {len(requests)} requests failed: {exc!r}")
            err = pb.TritonError(f"{self.name} failed: {exc}")
            return [pb.InferenceResponse(error=err) for _ in requests]
        return [
            pb.InferenceResponse(
                output_tensors=[out for i, out in zip(which, outs, strict=True) if i in want]
            )
            for want, outs in zip(wanted, parts, strict=True)
        ]

    def _wanted(self, request: Any) -> set[int]:
        """Positions of the outputs ``request`` asks for (Triton lists them all when it names none)."""
        names = request.requested_output_names()
        return {i for i, name in enumerate(self.output_names) if name in names} or {0}

    def _run_numpy(self, tensors: list, which: list[int]) -> list[list]:
        """Per request, the tensors of the outputs at ``which``."""
        arrays = [t.as_numpy() for t in tensors]
        batch = np.ascontiguousarray(arrays[0] if len(arrays) == 1 else np.concatenate(arrays), np.float32)
        outs = self.runner.outputs(batch, which)
        cuts = np.cumsum([a.shape[0] for a in arrays])[:-1]
        split = [np.split(out, cuts) for out in outs]
        return [
            [
                self.pb.Tensor(self.output_names[i], s[r].astype(self.output_dtypes[i], copy=False))
                for i, s in zip(which, split, strict=True)
            ]
            for r in range(len(arrays))
        ]

    def _run_dlpack(self, tensors: list, which: list[int]) -> list[list]:
        import torch
        from torch.utils.dlpack import from_dlpack, to_dlpack

        inputs = [from_dlpack(t.to_dlpack()) for t in tensors]
        outs = self.runner.forward_outputs(inputs[0] if len(inputs) == 1 else torch.cat(inputs), which)
        split = [out.split([int(x.shape[0]) for x in inputs]) for out in outs]
        return [
            [
                self.pb.Tensor.from_dlpack(self.output_names[i], to_dlpack(s[r].contiguous()))
                for i, s in zip(which, split, strict=True)
            ]
            for r in range(len(inputs))
        ]

    def finalize(self) -> None:
        self.runner = None
