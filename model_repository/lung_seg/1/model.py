"""`lung_seg`, 2D U-Net lung segmentation (Jin et al.): served by covidet.ensemble.SliceModel."""

import triton_python_backend_utils as pb_utils

from covidet.ensemble import SliceModel


class TritonPythonModel(SliceModel):
    pb = pb_utils  # the runtime and the batch handling are SliceModel's
