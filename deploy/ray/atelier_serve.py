"""Atelier on Ray Serve: the same FastAPI app as ingress, the inference in one deployment per capability.

    python -m deploy.ray.atelier_serve            # what `make run-ray` runs: a local Ray, serving on 127.0.0.1:8000
    serve run deploy.ray.atelier_serve:app        # on a Ray cluster that is already running (an app builder)

Layout. `AtelierIngress` runs app.main.create_app (every route, error body, the OpenAPI document, the web page,
/metrics) with a `remote` service: it loads no model. Three deployments do the work, each loading only its
capability's models in its replicas' __init__ (app.service.serves): `detect` (MTCNN), `embed` (MTCNN + dlib's
ResNet; /v1/embed and /v1/verify) and `stylize` (the style networks; filters need none). Each has its own
replicas, `autoscaling_config` and `ray_actor_options` (CPU, and a fraction of a GPU when the cluster has one).

The seam is app.work.Work: routers build one (the capability, a module-level function, the request's image
bytes and validated options) and the gate runs `service.job(work)`. Here that job is `RayExecutor`: on the
gate's thread it sends the Work to the capability's deployment handle and waits. The replica decodes the bytes
and runs the pipeline exactly as the plain service does (`Work.run`), so images are decoded in the replicas, not
in Ray's HTTP proxy or the ingress (the ingress reads only the images' headers, for the memory estimate).

Batching: the service's own batcher (app.batching), a BatchingRunner in front of each batchable net inside each
replica, not @serve.batch. @serve.batch batches whole calls of one method, so a batch would be a list of whole
requests: images of different sizes, each a whole MTCNN cascade or style run, which cannot be stacked. Our
batcher batches where stacking is possible, inside the pipelines: R-/O-Net crops, face chips, style images of
one processing size, from the jobs running at once in that replica. It forms batches only with company, so a
replica takes `max_ongoing_requests` (MAX_ONGOING) calls, well above the gate's running jobs: the same trap as
@serve.batch's, where the default of 5 caps a batch.

Deadlines: the ingress's gate deadline bounds the remote call. The Work is sent with what is left of it; the
replica runs the job in its own InferenceGate under that deadline (onnxruntime runs terminated, numpy steps
checked, as in the plain service). The ingress waits at most that long, and on timeout, cancellation (client
gone) or shutdown it cancels the Ray call (DeploymentResponse.cancel), which cancels the replica's task and so
its deadline.

Errors: a domain error raised in a replica (app.errors.AtelierError) reaches the ingress as Ray's RayTaskError;
`unwrap` turns it back into the original exception (its `cause`), so the one handler answers exactly as in the
plain service.

Readiness: /readyz asks every deployment (`ready`, 2 s at most) on each call; Serve itself starts routing to a
replica only once its __init__ (models loaded, warmed up) has returned. Metrics: /metrics is the ingress's
(HTTP requests, gate, overload); each replica keeps its own inference and batching metrics in its process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import RequestCancelledError
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, get_settings
from app.deadline import current_deadline
from app.errors import DeadlineExceeded, NotReady
from app.gate import InferenceGate
from app.main import create_app
from app.pipelines.style import Stylizer
from app.requestid import HEADER as REQUEST_ID_HEADER
from app.runtime import RegistryStatus
from app.service import STYLE_TASK, Pipelines, Service, build_pipelines, load_registry
from app.work import CAPABILITIES, Capability, Work

log = logging.getLogger("app.ray")

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_NAME = "atelier"
# Calls one replica takes at once: enough jobs for the batcher to find company (app.batching), bounded so the
# replica's gate never has to refuse one (its running jobs: Settings.max_concurrency; the rest wait there).
MAX_ONGOING = 8
READY_PROBE_S = 2.0  # the longest /readyz waits for a deployment's answer
INGRESS_CPUS = 0.25  # the ingress parses HTTP and waits: a quarter of a core
OBJECT_STORE_MB = 300  # requests and answers are a few MB each; Ray's default would take 30 % of the RAM
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Serve's proxy appends its own X-Request-ID to every answer; ours_only (below) keeps the app's.
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "deploy.ray.atelier_serve.proxy_middlewares",
}
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("latin-1")


class OneRequestId:
    """Proxy middleware: keep the first X-Request-ID of an answer (the app's: app/requestid.py, which accepts
    only sane ids) and drop the one Serve's own middleware, inside this one, appends after it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_one(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen = False
                headers = []
                for key, value in message.get("headers", []):
                    if key.lower() == _REQUEST_ID:
                        if seen:
                            continue
                        seen = True
                    headers.append((key, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_one)


def proxy_middlewares() -> list[Middleware]:
    """RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH: what Serve's HTTP proxy wraps around its app."""
    return [Middleware(OneRequestId)]


def unwrap(exc: BaseException) -> BaseException:
    """The exception raised in the replica, from Ray's wrapping of it (the one place that knows Ray does)."""
    while isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        exc = exc.cause
    return exc


class RayExecutor:
    """app.work.Executor: runs each Work in its capability's deployment, within the calling job's deadline."""

    def __init__(self, handles: Mapping[Capability, DeploymentHandle], timeout_s: float) -> None:
        self._handles = dict(handles)
        self._timeout_s = timeout_s

    def __call__(self, work: Work[T]) -> T:
        deadline = current_deadline()
        remaining = deadline.remaining() if deadline is not None else self._timeout_s
        response = self._handles[work.capability].run.remote(work, remaining)
        if not isinstance(response, DeploymentResponse):  # a streaming handle would give a generator
            raise TypeError("the capability deployments answer with one result per call")
        if deadline is None:
            return self._result(response, remaining)
        with deadline.cancelling(response.cancel):  # timeout, client gone, shutdown: the replica stops too
            return self._result(response, remaining)

    def _result(self, response: DeploymentResponse[T], remaining: float) -> T:
        try:
            return response.result(timeout_s=remaining)
        except RayTaskError as exc:
            raise unwrap(exc) from None
        except TimeoutError:
            response.cancel()
            raise DeadlineExceeded(f"the request ran past its {self._timeout_s:g} s deadline") from None
        except (RequestCancelledError, asyncio.CancelledError):
            raise DeadlineExceeded(f"the request ran past its {self._timeout_s:g} s deadline") from None
        except RayActorError:
            raise NotReady("the replica serving this request stopped; retry") from None


class Elsewhere:
    """A style net's stand-in at the ingress: the Stylizer there only resolves styles and estimates memory."""

    input_names: list[str] = []
    output_names: list[str] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("style networks run in the stylize deployment, not in the ingress")


@dataclass(frozen=True)
class Description:
    """What a capability replica tells the ingress at start-up."""

    status: RegistryStatus
    capabilities: frozenset[Capability]
    style_models: tuple[str, ...]
    catalogue: dict[str, Any] | None


class CapabilityReplica:
    """One replica of a capability's deployment: its models, pipelines and own gate, loaded in __init__."""

    capability: ClassVar[Capability]

    def __init__(self, settings: Settings, cpus: float) -> None:
        logging.basicConfig(level=settings.log_level.upper())
        threads = settings.intra_op_threads or max(1, math.ceil(cpus))
        self.settings = settings
        self.registry = load_registry(settings, self.capability, threads)
        # The ingress's gate bounds the calls; this one runs them here under the deadline they bring along.
        self.gate = InferenceGate(settings.max_concurrency, MAX_ONGOING, settings.request_timeout_s,
                                  settings.retry_after_s)
        self.pipelines = build_pipelines(self.registry, settings.models_dir, threads,
                                         settings.batch_policy(self.registry.uses_gpu()),
                                         company=lambda: self.gate.running, only=self.capability)
        log.info("%s replica ready: models %s", self.capability, sorted(self.registry.models))

    async def run(self, work: Work[T], remaining_s: float) -> T:
        return await self.gate.run(lambda: work.run(self.pipelines, self.settings), timeout_s=remaining_s)

    def describe(self) -> Description:
        stylizer = self.pipelines.stylizer
        style_models = tuple(model_id for model_id, model in self.registry.served_models().items()
                             if model.entry.get("task") == STYLE_TASK)
        catalogue = {"styles": stylizer.list_styles()} if stylizer is not None else None
        return Description(self.registry.status(), self.pipelines.capabilities(), style_models, catalogue)

    def ready(self) -> bool:
        return self.registry.ready and self.capability in self.pipelines.capabilities()

    def check_health(self) -> None:
        """Serve's periodic health check: a replica whose pipelines are gone is replaced."""
        if not self.ready():
            raise RuntimeError(f"the {self.capability} pipelines are not loaded")

    def __del__(self) -> None:
        pipelines = getattr(self, "pipelines", None)
        if pipelines is not None:
            pipelines.close()


class Detection(CapabilityReplica):
    capability = "detect"


class Embedding(CapabilityReplica):
    capability = "embed"


class Stylization(CapabilityReplica):
    capability = "stylize"


@serve.ingress()
class AtelierIngress:
    """The FastAPI app, built in the replica (`__serve_build_asgi_app__`) around the deployments' handles."""

    def __init__(self, settings: Settings, detect: DeploymentHandle, embed: DeploymentHandle,
                 stylize: DeploymentHandle) -> None:
        self._settings = settings
        self._handles: dict[Capability, DeploymentHandle] = {"detect": detect, "embed": embed, "stylize": stylize}

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self._settings, remote=self._connect)

    async def _connect(self, settings: Settings, gate: InferenceGate) -> Service:
        """The ingress's Service: the deployments' merged model status and style catalogue, no sessions."""
        described: Sequence[Description] = await asyncio.gather(
            *(self._handles[name].describe.remote() for name in CAPABILITIES))
        offered = frozenset().union(*(d.capabilities for d in described))
        stylizer = None
        for description in described:
            if description.catalogue is not None:
                stylizer = Stylizer(dict.fromkeys(description.style_models, Elsewhere()), description.catalogue)
        return Service(settings=settings, registry=RegistryStatus.merged([d.status for d in described]), gate=gate,
                       pipelines=Pipelines(stylizer=stylizer), executor=RayExecutor(self._handles,
                                                                                    settings.request_timeout_s),
                       offered=offered, probe=self._probe)

    async def _probe(self) -> bool:
        async def one(handle: DeploymentHandle) -> bool:
            try:
                return bool(await asyncio.wait_for(handle.ready.remote(), READY_PROBE_S))
            except Exception:  # not answering, or answering with an error: not ready
                return False

        return all(await asyncio.gather(*(one(handle) for handle in self._handles.values())))


def build_app(settings: Settings, *, gpus_per_replica: float = 0.0, cpus_per_replica: float = 0.5,
              max_replicas: int = 2) -> Any:
    """The Serve application: the ingress bound to the three capability deployments."""
    actor: dict[str, Any] = {"num_cpus": cpus_per_replica, **({"num_gpus": gpus_per_replica} if gpus_per_replica
                                                              else {})}
    autoscaling = {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": max_replicas,
        # A replica runs max_concurrency jobs at once; more waiting there means another replica would help.
        "target_ongoing_requests": settings.max_concurrency,
        "upscale_delay_s": 5,
        "downscale_delay_s": 60,
    }

    def deployment(cls: type[CapabilityReplica]) -> Any:
        return serve.deployment(
            cls, name=cls.capability, ray_actor_options=actor, autoscaling_config=autoscaling,
            max_ongoing_requests=MAX_ONGOING, health_check_period_s=10,
        ).bind(settings, cpus_per_replica)  # type: ignore[attr-defined]  # serve.deployment(cls, ...) is one

    # One ingress replica: its gate, rate limits and /metrics are per process, as a uvicorn worker's are.
    ingress: Any = serve.deployment(
        AtelierIngress, name="ingress", num_replicas=1, ray_actor_options={"num_cpus": INGRESS_CPUS},
        # every place of its gate, plus room for /healthz, /readyz and /metrics while the gate is full
        max_ongoing_requests=settings.max_concurrency + settings.max_queue + 16,
    )
    return ingress.bind(settings, deployment(Detection), deployment(Embedding), deployment(Stylization))


def runtime_env() -> dict[str, Any]:
    """Replicas import this checkout's `app` and `deploy` (not whatever else is installed), with usage stats off."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {**ENV, "PYTHONPATH": path}}


def start_ray(num_cpus: int, object_store_mb: int = OBJECT_STORE_MB) -> None:
    """A local single-node Ray on loopback: no dashboard, a small object store, no usage stats. The
    environment is set here too, before Ray starts: Serve's own actors (the proxy) inherit it from the raylet."""
    os.environ.update({**ENV, "PYTHONPATH": runtime_env()["env_vars"]["PYTHONPATH"]})
    ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_mb * 1024 * 1024,
             runtime_env=runtime_env(), _node_ip_address="127.0.0.1", configure_logging=False)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="atelier-ray", description="Atelier on a local Ray Serve")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2, help="CPUs Ray may schedule on")
    parser.add_argument("--cpus-per-replica", type=float, default=0.5)
    parser.add_argument("--max-replicas", type=int, default=2, help="per capability deployment (autoscaling)")
    parser.add_argument("--object-store-mb", type=int, default=OBJECT_STORE_MB)
    args = parser.parse_args(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    start_ray(args.num_cpus, args.object_store_mb)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        # Three capability deployments share the GPUs; a fraction each so that all fit on one device.
        gpus_per_replica = min(1.0, gpus / 4) if gpus else 0.0
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(settings, gpus_per_replica=gpus_per_replica, cpus_per_replica=args.cpus_per_replica,
                            max_replicas=args.max_replicas), name=APP_NAME, route_prefix="/")
        log.info("serving on http://%s:%d (Ctrl-C stops Ray)", args.host, args.port)
        stop.wait()
    finally:
        log.info("stopping Serve and Ray")
        serve.shutdown()
        ray.shutdown()
    return 0


def app(args: dict[str, str]) -> Any:
    """The application builder `serve run deploy.ray.atelier_serve:app` calls on a running cluster (settings
    from the ATELIER_* environment; the arguments are not used)."""
    return build_app(get_settings())

if __name__ == "__main__":
    raise SystemExit(main())
