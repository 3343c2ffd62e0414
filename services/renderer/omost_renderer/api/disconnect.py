"""Stop the work of a request whose client closed its connection before the answer was ready.

A route that waits for its answer (an LLM call, a render) sends nothing until it is ready, so it
would never notice a client that left. The request's ``receive`` channel is watched while the work
runs: ``http.disconnect`` cancels the work, which closes its upstream calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.requests import Request

from omost_renderer.errors import ClientClosedError

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # The body was read before the work started: the next message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; cancel it if the client of ``request`` disconnects first.

    Args:
        request: The request whose client is watched; its body must have been read.
        work: Makes the answer.

    Returns:
        What ``work`` returns.

    Raises:
        ClientClosedError: The client left; ``work`` was cancelled and has unwound.
    """
    answers: list[T] = []
    failures: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await _disconnected(request)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            answers.append(await work())
        except Exception as error:  # raised below, unwrapped from the task group's group
            failures.append(error)
        group.cancel_scope.cancel()  # done: stop watching
    if failures:
        raise failures[0]
    if not answers:
        raise ClientClosedError("the client closed the connection before the answer was ready")
    return answers[0]
