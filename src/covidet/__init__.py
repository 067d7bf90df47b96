"""covidet: a high-throughput COVID-19 chest-CT inference server on NVIDIA Triton.

Research software, not a medical device.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
