"""Serves the explorer and dashboard pages and their static files from the package."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.router import Router
from litestar.static_files import create_static_files_router

WEB_DIR = Path(__file__).parent


def _page(name: str) -> Response[bytes]:
    html = (WEB_DIR / name).read_bytes()
    # The pages hold a key in sessionStorage: no framing, no third-party anything.
    headers = {
        "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)


@get("/explorer", include_in_schema=False)
async def explorer_page() -> Response[bytes]:
    """Look requests up by request_id and verify them."""
    return _page("explorer.html")


@get("/dashboard", include_in_schema=False)
async def dashboard_page() -> Response[bytes]:
    """Manage keys, see usage."""
    return _page("dashboard.html")


def static_files() -> Router:
    """/static/*: the pages' CSS and JavaScript."""
    return create_static_files_router(path="/static", directories=[WEB_DIR / "static"], include_in_schema=False)
