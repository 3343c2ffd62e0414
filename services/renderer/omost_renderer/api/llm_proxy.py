"""A narrow proxy from the renderer API to the LLM service, so the web page stays same-origin.

The page chats through ``/llm/...`` on the renderer API instead of calling the LLM service
directly: no CORS, one address to expose. Only the LLM service's public routes are forwarded,
bodies and streams are passed through untouched, and a client that goes away closes the upstream
request, which cancels the generation: while the answer streams, and also while a non-streamed
answer is still being made (nothing has been sent back yet).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from omost_schema import ErrorResponse

from omost_renderer.api.disconnect import unless_disconnected
from omost_renderer.errors import ClientClosedError, UpstreamError

#: The LLM service's routes the page may use, with their methods.
_FORWARDED: dict[str, str] = {
    "v1/chat/completions": "POST",
    "v1/canvases": "POST",
    "v1/models": "GET",
    "health": "GET",
    "ready": "GET",
}
# Headers of the answer worth passing on; hop-by-hop and length headers are the server's own.
_ANSWER_HEADERS = ("content-type", "cache-control", "retry-after", "x-request-id")
# The LLM service's own limit headers describe the renderer's key, not the caller's: dropped.
_CONNECT_TIMEOUT_S = 5.0


class LLMProxy:
    """Forwards one request to the LLM service and streams its answer back.

    Args:
        base_url: The LLM service's base URL (``http://host:port``).
        timeout_s: Longest wait for the next piece of the answer.
        headers: Headers sent with every call (the renderer's own API key for the LLM service;
            the caller's ``Authorization`` is never forwarded).
    """

    def __init__(
        self, base_url: str, timeout_s: float, headers: dict[str, str] | None = None
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout_s, connect=_CONNECT_TIMEOUT_S)
        self._headers = dict(headers or {})

    async def forward(self, request: Request, path: str) -> StreamingResponse:
        """Send ``request`` to ``path`` on the LLM service and stream the answer back.

        The body is buffered whole; the API's body limit (``max_request_bytes``) bounds it.

        Raises:
            UpstreamError: If the LLM service cannot be reached.
            ClientClosedError: If the client left before the LLM service answered.
        """
        body = await request.body()
        headers = {**self._headers, "accept": request.headers.get("accept", "*/*")}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        client = httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout)
        outgoing = client.build_request(request.method, f"/{path}", content=body, headers=headers)
        try:
            upstream = await unless_disconnected(
                request, lambda: client.send(outgoing, stream=True)
            )
        except ClientClosedError:
            await client.aclose()
            raise
        except httpx.HTTPError as exc:
            await client.aclose()
            raise UpstreamError(
                f"The LLM service at {self._base_url} is not reachable ({type(exc).__name__}); "
                "check that `omost-llm serve` is running.",
                code="llm_unavailable",
            ) from exc
        answer_headers = {k: v for k, v in upstream.headers.items() if k in _ANSWER_HEADERS}
        return StreamingResponse(
            _relay(upstream, client),
            status_code=upstream.status_code,
            headers=answer_headers,
        )


async def _relay(upstream: httpx.Response, client: httpx.AsyncClient) -> AsyncIterator[bytes]:
    """Yield the upstream body; if it breaks mid-stream, end with one SSE error event."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            error = ErrorResponse.build(
                f"The LLM service stopped answering ({type(exc).__name__}).",
                "server_error",
                code="llm_unavailable",
            )
            yield f"data: {json.dumps(error.model_dump())}\n\n".encode()
    finally:
        await upstream.aclose()
        await client.aclose()


def _endpoint(
    proxy: LLMProxy, path: str
) -> Callable[[Request], Coroutine[None, None, StreamingResponse]]:
    # One closure per path: a default argument would become a query parameter in FastAPI.
    async def forward(request: Request) -> StreamingResponse:
        return await proxy.forward(request, path)

    return forward


def llm_proxy_router(
    base_url: str, timeout_s: float, headers: dict[str, str] | None = None
) -> APIRouter:
    """Return the ``/llm/{path}`` routes forwarding the page's calls to the LLM service.

    Args:
        base_url: The LLM service's base URL (the renderer setting ``llm_url``).
        timeout_s: Longest wait for the next piece of an answer (``llm_timeout_s``).
        headers: Headers sent with every forwarded call (``llm_api_key`` as a Bearer key).
    """
    router = APIRouter(tags=["llm"])
    proxy = LLMProxy(base_url, timeout_s, headers)

    for path, method in _FORWARDED.items():
        router.add_api_route(
            f"/llm/{path}",
            _endpoint(proxy, path),
            methods=[method],
            include_in_schema=False,
            summary=f"Forward to the LLM service's /{path}",
        )
    return router
