"""The one typed Settings object. Every environment variable is ATELIER_<FIELD>; nothing else reads os.environ."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.batching import BatchPolicy
from app.errors import InvalidParameter
from app.ratelimit import RateLimit

# Rows per batched run when ATELIER_BATCH_MAX_SIZE is 'auto' on a GPU: a GPU's throughput grows with the batch
# (Triton's and InsightFace-REST's figures in issue #11) where the CPU's does not (bench/results/load*.json). Not
# measured here: no GPU was lent; 16 face chips or R-/O-Net chunks fit any GPU's memory many times over.
GPU_BATCH_MAX_SIZE = 16
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", env_file=None, extra="ignore")

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="'text' (time, level, logger, [request id]: message) or 'json' (one object per line: "
        "time, level, logger, message, request_id, exception); uvicorn's own lines follow it too")

    # Models and runtime
    models_dir: Path = DEFAULT_MODELS_DIR
    providers: str = Field(
        "auto",
        description="'auto' (TensorRT, CUDA, CPU as available) or a comma-separated list of onnxruntime providers",
    )
    require_gpu: bool = Field(False, description="refuse to start unless a GPU provider is active for every model")
    intra_op_threads: int = Field(
        0, ge=0, description="threads one request may use: onnxruntime intra-op threads per session (MTCNN's "
        "sessions: one each, run from this many workers); 0 = cores / workers")
    warmup: bool = True
    ort_spinning: bool = Field(
        False, description="let onnxruntime's idle intra-op threads busy-wait: they then steal cores from the "
        "pipeline's own numpy work and other requests (off: MTCNN ~25 % faster, style unchanged)")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="CPU provider: 'auto' serves a model's int8 variant where the export's fidelity gate "
        "held and it measured faster (dlib-face-resnet), 'int8' wherever its gate held, 'fp32' never; GPU "
        "providers always run float32/float16")
    cudnn_conv_algo_search: Literal["HEURISTIC", "EXHAUSTIVE", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA provider: how cuDNN picks convolution algorithms for each new input shape")

    # Cross-request batching (app/batching.py)
    batch_max_size: int = Field(
        0, ge=0, description="rows (face chips, R-/O-Net crops, style images of one size) one batched run may "
        "stack from concurrent requests; 1 = batching off; 0 = auto: off on the CPU provider (no gain measured "
        "there, bench/load.py), GPU_BATCH_MAX_SIZE when a GPU provider runs the models")
    batch_timeout_ms: float = Field(
        2.0, ge=0, le=60_000, description="the longest a request's inputs wait for company before their run "
        "starts; never while they are the only job running")

    # Intake limits
    max_upload_bytes: int = Field(20_000_000, ge=1, description="largest accepted request body part, in bytes")
    max_pixels: int = Field(40_000_000, ge=1, description="largest decoded image, width x height")

    # Load control
    max_concurrency: int = Field(2, ge=1, description="inference calls running at once")
    max_queue: int = Field(8, ge=0, description="requests waiting for a slot before new ones get 503 OVERLOADED")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 OVERLOADED")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline for one request's inference")
    drain_delay_s: float = Field(
        0.0, ge=0, le=300, description="on SIGTERM, how long the server still accepts requests while /readyz "
        "already reports draining (for load balancers to take it out first)")
    shutdown_grace_s: int = Field(30, ge=0, description="on SIGTERM (after drain_delay_s), how long in-flight "
                                  "requests may still finish")
    memory_budget_mb: int = Field(0, ge=0, description="memory the jobs of one worker may use at once, by their "
                                  "estimated peaks; 0 = what the cgroup limit (or the machine) leaves after loading")

    # Access
    api_keys: str = Field("", description="comma-separated API keys; when set (or api_key_file is), /v1 needs one")
    api_key_file: Path | None = Field(None, description="file with one API key per line (# comments allowed)")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty = CORS off")
    rate_limit: str = Field("", description="per API key (per client address without keys), e.g. '20/s', "
                            "'600/min'; empty = no limit")
    rate_burst: int | None = Field(None, ge=1, description="requests a quiet client may send at once; "
                                   "default one second's worth of rate_limit")

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        try:
            RateLimit.parse(value)
        except InvalidParameter as exc:
            raise ValueError(exc.message) from None
        return value.strip()

    @field_validator("providers")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def provider_list(self) -> list[str] | None:
        """None means 'auto'; otherwise the explicit provider names in order of preference."""
        if self.providers.lower() == "auto":
            return None
        return [p.strip() for p in self.providers.split(",") if p.strip()]

    def accepted_api_keys(self) -> list[str]:
        keys = [k.strip() for k in self.api_keys.split(",") if k.strip()]
        if self.api_key_file is not None:
            for line in self.api_key_file.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.append(line)
        return keys

    def rate_limit_rule(self) -> RateLimit | None:
        return RateLimit.parse(self.rate_limit, self.rate_burst)

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def batch_policy(self, gpu: bool) -> BatchPolicy:
        """The batching of this deployment; gpu: whether a GPU provider runs the models (for 'auto')."""
        size = self.batch_max_size or (GPU_BATCH_MAX_SIZE if gpu else 1)
        return BatchPolicy(max_size=size, timeout_s=self.batch_timeout_ms / 1000.0)

    def threads_per_session(self) -> int:
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, (os.cpu_count() or 1) // self.workers)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
