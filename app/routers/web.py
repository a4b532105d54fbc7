"""The demo page at GET /: plain HTML, CSS and JavaScript served from app/static, calling the public API only."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Swagger UI 5 (OpenAPI 3.1) as shipped in the swagger-ui-py wheel: /docs loads nothing from a CDN.
SWAGGER_DIR = Path(swagger_ui.__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Atelier API",
        swagger_js_url="/docs-static/swagger-ui-bundle.js",
        swagger_css_url="/docs-static/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )


def swagger_files() -> StaticFiles:
    return StaticFiles(directory=SWAGGER_DIR)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
