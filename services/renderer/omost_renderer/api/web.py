"""The web page: static files at ``/`` and ``/static/``, plus the routes the page relies on.

The page is plain JavaScript modules with no build step, served from the package's ``static``
folder. ``include_web`` is the one call the app factory makes to add it all.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
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


def include_web(app: FastAPI, *, llm_url: str, llm_timeout_s: float) -> None:
    """Add the page, its static files, the schema routes and the LLM proxy to ``app``.

    Args:
        app: The renderer API.
        llm_url: Base URL of the LLM service that ``/llm/...`` forwards to.
        llm_timeout_s: Longest wait for the next piece of an LLM answer.
    """
    app.include_router(page_router())
    app.include_router(vocabulary_router())
    app.include_router(llm_proxy_router(llm_url, llm_timeout_s))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
