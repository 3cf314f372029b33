"""GET /: a small web page that streams music and speech, and manages jobs and voices; GET /docs: Swagger UI.

Plain HTML, CSS and JavaScript under gateway/static/, served as files: no build step, no CDN. Swagger UI's
own files come from the `fastapi-swagger` package, served here too, so /docs works without Internet access.
"""

from __future__ import annotations

from pathlib import Path

from importlib.resources import files

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from tritone.gateway.errors import APIError

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SWAGGER_UI = Path(str(files("fastapi_swagger.resources")))  # Swagger UI 5's dist files, from the package
SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
                  "favicon-32x32.png": "image/png"}

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
        raise APIError(404, f"no static file {name!r}", type="not_found_error")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="tritone - API docs",
                               oauth2_redirect_url="/docs/oauth2-redirect",
                               swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs/assets/swagger-ui.css",
                               swagger_favicon_url="/docs/assets/favicon-32x32.png")


@router.get("/docs/oauth2-redirect")
async def docs_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in SWAGGER_ASSETS:
        raise APIError(404, f"no docs file {name!r}", type="not_found_error")
    return FileResponse(SWAGGER_UI / name, media_type=SWAGGER_ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})
