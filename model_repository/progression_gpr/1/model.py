"""Triton Python-backend model `progression_gpr`: DL#5, per-patient GP of the lesion ratio.

All logic lives in `covidet.progression`; the GP is fit on each request (not pre-trained).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from covidet import _contract as C
from covidet.progression import ProgressionError, fit_course


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.horizon_days = float(params.get("horizon_days", "30") or 30)
        self.n_restarts = int(params.get("n_restarts", "2") or 2)
        if self.horizon_days <= 0 or self.n_restarts < 0:
            raise ValueError(
                f"progression_gpr parameters: horizon_days must be > 0 and n_restarts >= 0, got "
                f"{self.horizon_days} and {self.n_restarts}"
            )
        pb_utils.Logger.log_info(
            f"progression_gpr: horizon {self.horizon_days:g} days, {self.n_restarts} restarts"
        )

    def _one(self, request: object) -> object:
        def get(name: str) -> np.ndarray | None:
            t = pb_utils.get_input_tensor_by_name(request, name)
            return None if t is None else t.as_numpy().astype(np.float64).reshape(-1)

        days, ratios, query = get("DAYS"), get("RATIOS"), get("QUERY_DAYS")
        levels = get("LEVELS")
        course = fit_course(days, ratios, n_restarts=self.n_restarts)
        mean, std = course.predict(query)
        crossing = np.full(0 if levels is None else levels.size, np.nan, dtype=np.float32)
        if levels is not None and levels.size:
            hits = course.crossing_days(levels, horizon_days=self.horizon_days)
            crossing[:] = [np.nan if hits[float(v)] is None else hits[float(v)] for v in levels]
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("MEAN", mean.astype(np.float32)),
                pb_utils.Tensor("STD", std.astype(np.float32)),
                pb_utils.Tensor("CROSSING_DAYS", crossing),
            ]
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except ProgressionError as exc:
                code = C.ErrorCode.INVALID_SERIES
                err = pb_utils.TritonError(
                    C.error_message(code, str(exc)), getattr(pb_utils.TritonError, code.triton_status)
                )
                responses.append(pb_utils.InferenceResponse(error=err))
        return responses
