"""API keys and per-key rate limits of the LLM service, driven by the real openai SDK."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import openai
import pytest
from omost_llm.auth import KeyLimiter, estimate_tokens
from omost_llm.config import Settings
from omost_llm.errors import KeyRateLimitError
from omost_llm.main import create_app

from .conftest import serve_app
from .fakes import FakeBackend

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"
Keyed = Callable[..., AbstractContextManager[str]]
USER = [{"role": "user", "content": "a dragon over a castle"}]


@pytest.fixture
def keyed(settings_factory: Callable[..., Settings]) -> Keyed:
    def start(**overrides: object) -> AbstractContextManager[str]:
        settings = settings_factory(api_keys=f"alice={ALICE},bob={BOB}", **overrides)
        return serve_app(create_app(settings, FakeBackend()))

    return start


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_the_openai_sdk_api_key_just_works(keyed: Keyed) -> None:
    with keyed() as url, sdk(url, ALICE) as client:
        answer = client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
        assert answer.model_extra is not None
        assert answer.model_extra["omost"]["canvas"]
        assert [model.id for model in client.models.list()] == ["test-model"]


def test_a_wrong_or_missing_key_is_refused_with_401(keyed: Keyed) -> None:
    with keyed() as url:
        with (
            sdk(url, "wrong-key-0123456789") as client,
            pytest.raises(openai.AuthenticationError) as refused,
        ):
            client.chat.completions.create(model="test-model", messages=USER)  # type: ignore[arg-type]
        assert refused.value.status_code == 401
        assert refused.value.response.headers["www-authenticate"] == "Bearer"
        assert refused.value.code == "invalid_api_key"
        for path in ("/v1/models", "/v1/canvases"):
            missing = httpx.request("POST" if "canvases" in path else "GET", url + path, json={})
            assert missing.status_code == 401
            assert missing.json()["error"]["code"] == "missing_api_key"
        for path in ("/health", "/ready", "/metrics"):
            assert httpx.get(url + path).status_code == 200


def test_metrics_can_have_their_own_key(keyed: Keyed) -> None:
    with keyed(metrics_api_key="metrics-key-0123456789") as url:
        assert httpx.get(url + "/metrics").status_code == 401
        headers = {"authorization": "Bearer metrics-key-0123456789"}
        assert httpx.get(url + "/metrics", headers=headers).status_code == 200


def test_requests_a_minute_answer_429_with_openai_headers(
    keyed: Keyed,
) -> None:
    with keyed(requests_per_minute=2) as url, sdk(url, ALICE) as client:
        first = client.models.with_raw_response.list()
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        client.models.list()
        with pytest.raises(openai.RateLimitError) as limited:
            client.models.list()
        headers = limited.value.response.headers
        assert limited.value.code == "rate_limit_exceeded"
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        with sdk(url, BOB) as other:
            assert other.models.list().data
        metrics = httpx.get(url + "/metrics").text
        assert 'omost_llm_key_requests_total{key="alice",outcome="rate_limited"} 1.0' in metrics
        assert 'omost_llm_key_requests_total{key="alice",outcome="allowed"} 2.0' in metrics
        assert ALICE not in metrics


def test_tokens_a_minute_count_the_prompt_and_max_tokens(
    keyed: Keyed,
) -> None:
    limits = {"alice": {"tokens_per_minute": 1000}}
    with keyed(key_limits=limits) as url, sdk(url, ALICE) as client:
        answer = client.chat.completions.with_raw_response.create(
            model="test-model",
            messages=USER,  # type: ignore[arg-type]
            max_tokens=600,
        )
        used = estimate_tokens([USER[0]["content"]], 600)
        assert answer.headers["x-ratelimit-remaining-tokens"] == str(1000 - used)
        client.chat.completions.create(model="test-model", messages=USER, max_tokens=600)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="test-model", messages=USER, max_tokens=10)  # type: ignore[arg-type]
        assert limited.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_limiter_starts_again_each_minute(settings_factory: Callable[..., Settings]) -> None:
    limiter = KeyLimiter(settings_factory(requests_per_minute=1, tokens_per_minute=0))
    limiter.count_request("alice", now=120.0)
    with pytest.raises(KeyRateLimitError) as limited:
        limiter.count_request("alice", now=150.0)
    assert limited.value.retry_after == 30
    (state,) = limiter.count_request("alice", now=180.0)
    assert (state.resource, state.remaining) == ("requests", 0)
    assert limiter.charge_tokens("alice", 10**9, now=180.0) == [state]


def test_without_keys_the_service_is_open(settings_factory: Callable[..., Settings]) -> None:
    with serve_app(create_app(settings_factory(), FakeBackend())) as url:
        with sdk(url, "anything") as client:
            assert client.models.list().data
        assert httpx.get(url + "/v1/models").status_code == 200
