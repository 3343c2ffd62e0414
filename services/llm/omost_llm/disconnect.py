"""Stop the work of a request whose client went away before its answer was ready.

A non-streamed answer is awaited as a whole: nothing is sent that could fail when the client has
gone. So, as vLLM does, the request's ``receive`` channel is watched while the answer is made:
``http.disconnect`` cancels the work, which closes the backend's generation and frees its slot.
Once a streamed response starts, the streaming response watches the client itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from omost_llm.errors import ClientDisconnectedError

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # The body has been read before the handler runs: the next message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; cancel it if the client disconnects first.

    Args:
        request: The request whose client is watched.
        work: Makes the answer.

    Returns:
        What ``work`` returns.

    Raises:
        ClientDisconnectedError: The client left; ``work`` was cancelled and has finished.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this handler is cancelled itself (server shutdown): nothing is left running.
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    # Wait for the cancellation to unwind (the backend's generation closed, the slot released).
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a cancelled generation failed while stopping", exc_info=task.exception())
    logger.info("client disconnected from %s; its generation was cancelled", request.url.path)
    raise ClientDisconnectedError("the client closed the connection before the answer")
