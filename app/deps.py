"""FastAPI dependencies: the per-process Service and what routers take from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import NotReady
from app.service import Service


def get_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the service is starting")
    return service


def get_settings_dep(service: Annotated[Service, Depends(get_service)]) -> Settings:
    return service.settings


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
