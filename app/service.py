"""What a worker process holds for its lifetime: settings, loaded models, the inference gate, pipelines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.gate import InferenceGate
from app.runtime import ModelRegistry


@dataclass
class Service:
    settings: Settings
    registry: ModelRegistry
    gate: InferenceGate
    pipelines: dict[str, Any] = field(default_factory=dict)  # capability name -> pipeline object
    started_at: float = field(default_factory=time.time)
    draining: bool = False

    @property
    def ready(self) -> bool:
        return self.registry.ready and not self.draining
