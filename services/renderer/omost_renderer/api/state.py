"""What the routes share, built once by the app's lifespan and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request
from redis.asyncio import Redis

from omost_renderer.config import Settings
from omost_renderer.job_queue.api_queue import JobQueue
from omost_renderer.job_queue.quotas import KeyQuotas
from omost_renderer.storage.stores import ResultStore
from omost_renderer.webhooks.events import WebhookAdmission


@dataclass
class ServiceState:
    """Clients and settings of one API process."""

    settings: Settings
    redis: Redis
    queue: JobQueue
    store: ResultStore
    http: httpx.AsyncClient
    webhooks: WebhookAdmission
    quotas: KeyQuotas


def get_state(request: Request) -> ServiceState:
    """FastAPI dependency: the service state of the app serving ``request``."""
    state: ServiceState = request.app.state.service
    return state
