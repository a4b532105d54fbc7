"""The app factory and its lifespan: models are loaded once per worker process, after uvicorn forks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.config import Settings, get_settings
from app.deps import require_api_key, within_rate_limit
from app.draining import drain_on_sigterm
from app.gate import InferenceGate
from app.handlers import install_error_handlers
from app.memory import MIB, MemoryBudget, default_budget_bytes
from app.middleware import MetricsMiddleware, RequestIdMiddleware
from app.ratelimit import RateLimiter
from app.requestid import HEADER as REQUEST_ID_HEADER
from app.routers import detect, ops, stylize, verify, web
from app.service import Service, build_pipelines, load_registry

log = logging.getLogger("app")

DESCRIPTION = """Fast neural style transfer, MTCNN face detection and face verification, served with onnxruntime.

Images go in as multipart file fields, as a JSON body with base64 strings, or (single-image endpoints) as a raw
image body. Every error answers `{"error": {"code": ..., "message": ..., "request_id": ...}}`. Every response
carries `X-Request-ID`: the client's own when it sent a sane one (1-128 characters of `A-Za-z0-9._:-`), else a
new one; the server's log lines for that request carry the same id."""


# Builds the Service from the gate instead of loading models here (deploy/ray: the models live in deployments).
RemoteService = Callable[[Settings, InferenceGate], Awaitable[Service]]


def create_app(settings: Settings | None = None, remote: RemoteService | None = None) -> FastAPI:
    """The service. remote: where the inference runs when not in this process (deploy/ray/atelier_serve.py);
    every route, error body and the OpenAPI document are the same either way."""
    settings = settings or get_settings()

    def new_gate() -> InferenceGate:
        # After the models are loaded: the default budget is what they leave of the memory limit.
        budget = MemoryBudget(settings.memory_budget_mb * MIB if settings.memory_budget_mb
                              else default_budget_bytes(settings.workers))
        return InferenceGate(settings.max_concurrency, settings.max_queue, settings.request_timeout_s,
                             settings.retry_after_s, memory=budget)

    async def local_service() -> Service:
        registry = await run_in_threadpool(load_registry, settings)
        gate = new_gate()
        pipelines = build_pipelines(registry, settings.models_dir, settings.threads_per_session(),
                                    settings.batch_policy(registry.uses_gpu()), company=lambda: gate.running)
        return Service(settings=settings, registry=registry, gate=gate, pipelines=pipelines)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await (remote(settings, new_gate()) if remote is not None else local_service())
        registry, pipelines, gate = service.registry, service.pipelines, service.gate
        budget_mb = gate.memory.total // MIB if gate.memory is not None else 0
        app.state.service = service
        # On Ray, Serve stops replicas itself (deploy/ray): no SIGTERM handler of ours inside its actors.
        restore_sigterm = (drain_on_sigterm(service.start_draining, settings.drain_delay_s) if remote is None
                           else lambda: None)
        log.info("ready: %d models, providers %s, memory budget %d MB", len(registry.models),
                 registry.active_providers(), budget_mb)
        try:
            yield
        finally:
            restore_sigterm()
            service.draining = True
            gate.shutdown()
            pipelines.close()
            app.state.service = None

    # operationId = the endpoint function's name ("detect", "verify"): the names generated clients give them.
    app = FastAPI(title="Atelier", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # /docs is served from local files (app/routers/web.py)
                  generate_unique_id_function=lambda route: route.name)
    app.state.api_keys = [key.encode() for key in settings.accepted_api_keys()]
    rule = settings.rate_limit_rule()
    app.state.rate_limiter = RateLimiter(rule) if rule is not None else None
    install_error_handlers(app)
    if settings.cors_origin_list():
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list(), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
                           expose_headers=[REQUEST_ID_HEADER])
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)  # added last, so outermost: every answer, preflights too, gets the id
    app.include_router(ops.router)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    app.mount("/docs-static", web.swagger_files(), name="docs-static")
    protected = [Depends(require_api_key), Depends(within_rate_limit)]  # in this order: keys are checked first
    app.include_router(ops.v1_router, dependencies=protected)
    app.include_router(detect.router, dependencies=protected)
    app.include_router(verify.router, dependencies=protected)
    app.include_router(stylize.router, dependencies=protected)
    return app
