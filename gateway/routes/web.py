"""GET /: a small web page that streams music from POST /v1/audio/music and manages jobs.

Plain HTML, CSS and JavaScript under gateway/static/, served as files: no build step, no CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from tritone.gateway.errors import APIError

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
        raise APIError(404, f"no static file {name!r}", type="not_found_error")
    return FileResponse(STATIC / name, media_type=ASSETS[name])
