"""The covidet client: light (no torch, no onnxruntime), gRPC or HTTP.

from covidet.client import Client
with Client("127.0.0.1:8001") as c:
    d = c.diagnose("path/to/dicom_folder")
    print(d.predicted_class, d.p_covid_stepwise, d.lesion_ratio)

asyncio: ``async with AsyncClient(url) as c: d = await c.diagnose(...)`` (same options, results and
errors).
"""

from __future__ import annotations

from covidet.client._async import AsyncClient
from covidet.client._forecast import Forecast, plot_forecast
from covidet.client._result import Diagnosis, SliceScore
from covidet.client._sync import Client, diagnose
from covidet.client._volume import (
    GEOMETRY_POLICIES,
    DuplicatePositionError,
    NotCTError,
    SeriesGeometryError,
    SliceSpacingError,
    Volume,
    VolumeError,
    load_volume,
)
from covidet.errors import (
    CovidetError,
    InvalidInputError,
    ModelNotFoundError,
    NoLungFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
)

__all__ = [
    "GEOMETRY_POLICIES",
    "AsyncClient",
    "Client",
    "CovidetError",
    "Diagnosis",
    "DuplicatePositionError",
    "Forecast",
    "InvalidInputError",
    "ModelNotFoundError",
    "NoLungFoundError",
    "NotCTError",
    "PermissionDeniedError",
    "RequestTimeoutError",
    "SeriesGeometryError",
    "ServerBusyError",
    "ServerError",
    "ServerUnavailableError",
    "SliceScore",
    "SliceSpacingError",
    "Volume",
    "VolumeError",
    "diagnose",
    "load_volume",
    "plot_forecast",
]
