"""Triton Python-backend model `progression_gpr`: DL#5, per-patient GP of the lesion ratio.

All logic lives in `covidet.progression`; the GP is fit on each request (not pre-trained).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from covidet import _contract as C
from covidet.progression import DEFAULT_PRIOR, CoursePrior, ProgressionError, forecast_outputs


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.horizon_days = float(params.get("horizon_days", "30") or 30)
        self.n_restarts = int(params.get("n_restarts", "2") or 2)
        prior_file = params.get("course_prior", "").strip()
        # a hospital's own prior (covidet train-course-prior), else the built-in literature one
        self.prior = CoursePrior.load(prior_file) if prior_file else DEFAULT_PRIOR
        if self.horizon_days <= 0 or self.n_restarts < 0:
            raise ValueError(
                f"progression_gpr parameters: horizon_days must be > 0 and n_restarts >= 0, got "
                f"{self.horizon_days} and {self.n_restarts}"
            )
        pb_utils.Logger.log_info(
            f"progression_gpr: horizon {self.horizon_days:g} days, {self.n_restarts} restarts, "
            f"course prior: {self.prior.source}"
        )

    def _one(self, request: object) -> object:
        days_s, ratios_s, query_s, levels_s = C.PROGRESSION_GPR.inputs

        def get(spec: C.TensorSpec) -> np.ndarray | None:
            t = pb_utils.get_input_tensor_by_name(request, spec.name)
            return None if t is None else t.as_numpy().astype(np.float64).reshape(-1)

        outputs = forecast_outputs(
            get(days_s),
            get(ratios_s),
            get(query_s),
            get(levels_s),
            horizon_days=self.horizon_days,
            n_restarts=self.n_restarts,
            prior=self.prior,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(s.name, outputs[s.name]) for s in C.PROGRESSION_GPR.outputs]
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
