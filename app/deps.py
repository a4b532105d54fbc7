"""FastAPI dependencies: the per-process Service and what routers take from it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import NotReady, Unauthorized
from app.gate import Admission
from app.ratelimit import RateLimiter
from app.service import Service


def get_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the service is starting")
    return service


def get_settings_dep(service: Annotated[Service, Depends(get_service)]) -> Settings:
    return service.settings


def _offered_key(request: Request) -> str | None:
    offered = request.headers.get("x-api-key")
    if offered is None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else None
    return offered


def require_api_key(request: Request) -> None:
    """When API keys are configured, accept `X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    keys: list[bytes] = getattr(request.app.state, "api_keys", [])
    if not keys:
        return
    offered = _offered_key(request)
    if offered is None:
        raise Unauthorized("an API key is required: send X-API-Key or Authorization: Bearer",
                           headers={"WWW-Authenticate": "Bearer"})
    candidate = offered.encode()
    # Compare against every key, always, so the time taken says nothing about which key nearly matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    if not matched:
        raise Unauthorized("the API key is not valid", headers={"WWW-Authenticate": "Bearer"})


async def admitted(service: Annotated[Service, Depends(get_service)]) -> AsyncIterator[Admission]:
    """A place in the inference gate, taken before the route reads the body (refused: 503 OVERLOADED)."""
    async with service.gate.admit() as admission:
        yield admission


def within_rate_limit(request: Request) -> None:
    """One token of the client's bucket (app.ratelimit); runs after require_api_key, so the key is a valid one."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    if getattr(request.app.state, "api_keys", []):
        client = "key:" + hashlib.sha256((_offered_key(request) or "").encode()).hexdigest()
    else:
        client = "address:" + (request.client.host if request.client else "unknown")
    limiter.check(client)


ServiceDep = Annotated[Service, Depends(get_service)]
AdmissionDep = Annotated[Admission, Depends(admitted)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
