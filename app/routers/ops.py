"""Operations endpoints: liveness, readiness, Prometheus metrics, the model list."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import metrics
from app.deps import ServiceDep
from app.schemas import Health, ModelInfo, ModelList, Readiness

router = APIRouter(tags=["operations"])
v1_router = APIRouter(tags=["operations"])  # under /v1: behind the API key when one is set


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every model loaded and warmed up",
    responses={503: {"model": Readiness, "description": "not ready (starting or draining)"}},
)
async def readyz(request: Request) -> Response:
    service = getattr(request.app.state, "service", None)
    if service is None:
        body = Readiness(ready=False, models=0, providers={})
        return JSONResponse(body.model_dump(), status_code=503)
    ready = await service.check_ready()  # on Ray: every deployment asked
    body = Readiness(ready=ready, draining=service.draining, models=len(service.registry.models),
                     providers=service.registry.active_providers())
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics() -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


@v1_router.get("/v1/models", response_model=ModelList, summary="Every model in the manifest")
async def list_models(service: ServiceDep) -> ModelList:
    registry = service.registry
    models = []
    for entry in registry.entries:
        loaded = registry.models.get(entry["id"])
        models.append(ModelInfo(
            id=entry["id"],
            task=entry["task"],
            version=entry["version"],
            sha256=entry["sha256"],
            licence=entry["licence"],
            source=entry.get("sources", []),
            loaded=loaded is not None,
            active_provider=loaded.active_provider if loaded else None,
            precision=registry.precision(entry["id"]),
            inputs=entry.get("inputs", []),
            outputs=entry.get("outputs", []),
            note=registry.skipped.get(entry["id"]),
        ))
    return ModelList(models=models)
