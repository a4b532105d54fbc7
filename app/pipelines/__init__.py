"""Pure numpy/OpenCV pipelines. Nothing here knows about HTTP or FastAPI.

A pipeline receives its models as `Runner`s: app.runtime.ModelSession in the service, anything with the
same two members in tests (for example a wrapper around an onnxruntime session on a file).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class Runner(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs in graph order."""
        ...
