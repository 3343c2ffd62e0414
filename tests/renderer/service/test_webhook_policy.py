"""The webhook URL policy and signing keys, without a network: a resolver given by the test."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest
from omost_renderer.config import Settings
from omost_renderer.webhooks.events import (
    SigningKeys,
    URLPolicy,
    WebhookAdmission,
    WebhookRefusedError,
    WebhookSecretError,
    WebhookSpec,
    WebhookURLError,
    parse_secrets,
    secret_bytes,
    sign,
)
from pydantic import SecretStr, ValidationError

ANSWERS = {
    "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebound.example.com": ["93.184.215.14", "10.0.0.7"],  # one public, one private address
    "metadata.example.com": ["169.254.169.254"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "office.example.com": ["10.20.1.5"],
}


async def resolver(host: str, port: int) -> list[str]:
    if host not in ANSWERS:
        raise OSError("name does not resolve")
    return ANSWERS[host]


def check(url: str, allowed: str = "") -> list[str]:
    return asyncio.run(URLPolicy.parse(allowed, resolver).check(url))


def test_public_https_hosts_pass_and_every_address_is_checked() -> None:
    assert check("https://hooks.example.com/render") == ANSWERS["hooks.example.com"]
    for url in (
        "https://rebound.example.com/",
        "https://metadata.example.com/latest",
        "https://mapped.example.com/",
        "https://100.64.0.1/",  # shared address space (CGNAT)
        "https://224.0.0.1/",
        "https://0.0.0.0/",
    ):
        with pytest.raises(WebhookURLError):
            check(url)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(WebhookURLError, match="does not resolve"):
        check("https://nowhere.example.com/")


def test_allowed_networks_and_names_open_private_addresses_and_http() -> None:
    assert check("http://office.example.com/hook", "10.20.0.0/16") == ["10.20.1.5"]
    assert check("http://10.20.9.9:8080/hook", "10.20.0.0/16") == ["10.20.9.9"]
    with pytest.raises(WebhookURLError, match="https"):
        check("http://hooks.example.com/", "10.20.0.0/16")  # public, but http: not allowed
    with pytest.raises(WebhookURLError):
        check("https://rebound.example.com/", "10.20.0.0/16")  # 10.0.0.7 is outside it
    assert check("http://receiver:9000/hook", "receiver") == []  # named: any address
    assert check("http://[::1]:9000/hook", "::1") == ["::1"]


def test_the_allow_list_refuses_what_is_neither_a_name_nor_a_network() -> None:
    with pytest.raises(ValueError, match="neither"):
        URLPolicy.parse("ok.example, not a host")
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_hosts="bad/host/name")


def test_signatures_follow_the_standard_webhooks_scheme() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    assert secret_bytes(secret) == key
    body = b'{"type":"render.completed"}'
    expected = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert sign(key, "msg_1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()
    for bad in ("secret", "whsec_", "whsec_***"):
        with pytest.raises(WebhookSecretError):
            secret_bytes(bad)
    with pytest.raises(ValidationError):
        Settings(webhook_secret="not-a-secret")


def test_a_key_signs_with_its_own_secret_else_the_services() -> None:
    own = "whsec_" + base64.b64encode(b"alice's key").decode()
    shared = "whsec_" + base64.b64encode(b"the service's key").decode()
    assert parse_secrets(f"alice={own}") == {"alice": b"alice's key"}
    keys = SigningKeys.from_settings(SecretStr(shared), SecretStr(f"alice={own}, "))
    assert keys.for_key("alice") == b"alice's key"
    assert keys.for_key("bob") == b"the service's key"
    assert SigningKeys.from_settings(None, SecretStr(f"alice={own}")).for_key("bob") is None
    with pytest.raises(WebhookSecretError):
        parse_secrets("alice")


def test_admission_keeps_the_webhook_on_the_job_and_refuses_without_a_secret() -> None:
    policy = URLPolicy.parse("", resolver)
    keys = SigningKeys.from_settings(
        None, SecretStr("alice=whsec_" + base64.b64encode(b"k").decode())
    )
    admission = WebhookAdmission(policy=policy, keys=keys, progress_every=3)
    spec = WebhookSpec(url="https://hooks.example.com/r", events=["progress", "completed"])
    fields = asyncio.run(admission.job_fields(spec, "alice"))
    assert fields == {
        "webhook_url": "https://hooks.example.com/r",
        "webhook_events": ",completed,progress,",
        "webhook_every": "3",
    }
    with pytest.raises(WebhookRefusedError, match="secret"):
        asyncio.run(admission.job_fields(spec, "bob"))
