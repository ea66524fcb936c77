"""Swagger UI at /api/docs, its assets served by the app itself.

FastAPI's default page loads Swagger UI from a CDN, so on a machine or network without internet
(call-center LANs often are) /api/docs is a blank page. The files come from the fastapi-offline
wheel (MIT; its swagger-ui-bundle.js and swagger-ui.css are byte-identical to the swagger-ui-dist
5.32.6 release on npm); only its static folder is used, not its FastAPI subclass.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/api/docs"
ASSETS_URL = "/api/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def install_docs_ui(app: FastAPI, docs_url: str = DOCS_URL) -> None:
    """Serve Swagger UI at docs_url (create the app with docs_url=None)."""
    missing = [name for name in ASSET_FILES if not (ASSETS_DIR / name).is_file()]
    if missing:  # a changed wheel layout must fail at start, not as a blank page
        raise RuntimeError(f"Swagger UI assets missing in {ASSETS_DIR}: {missing}")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL in the page needs it back.
        root = request.scope.get("root_path", "").rstrip("/")
        assert app.openapi_url is not None
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # No spec validation through swagger.io: it would send the schema's URL outside.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    app.add_route(docs_url, swagger_ui_html, include_in_schema=False)
    if redirect_url:

        async def swagger_ui_redirect(_: Request) -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
