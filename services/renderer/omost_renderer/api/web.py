"""The web page: static files at ``/`` and ``/static/``, plus the routes the page relies on.

The page is plain JavaScript modules with no build step, served from the package's ``static``
folder. ``include_web`` is the one call the app factory makes to add it all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.params import Depends
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from omost_renderer.api.llm_proxy import llm_proxy_router
from omost_renderer.api.vocabulary import vocabulary_router

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page is small and changes with each release; revalidating keeps it fresh after an upgrade.
_NO_CACHE = {"cache-control": "no-cache"}


def page_router() -> APIRouter:
    """Return the route serving the page itself at ``/``."""
    router = APIRouter(tags=["web"])

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)

    return router


def include_web(
    app: FastAPI,
    *,
    llm_url: str,
    llm_timeout_s: float,
    llm_headers: dict[str, str] | None = None,
    dependencies: Sequence[Depends] = (),
) -> None:
    """Add the page, its static files, the schema routes and the LLM proxy to ``app``.

    Args:
        app: The renderer API.
        llm_url: Base URL of the LLM service that ``/llm/...`` forwards to.
        llm_timeout_s: Longest wait for the next piece of an LLM answer.
        llm_headers: Headers sent with every forwarded call (the renderer's own LLM key).
        dependencies: What the API routes depend on (the API-key check); the page itself and
            its static files stay open, so it can ask for a key.
    """
    app.include_router(page_router())
    app.include_router(vocabulary_router(), dependencies=list(dependencies))
    app.include_router(
        llm_proxy_router(llm_url, llm_timeout_s, llm_headers), dependencies=list(dependencies)
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
