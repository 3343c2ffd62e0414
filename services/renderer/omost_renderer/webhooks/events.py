"""Webhooks of render jobs: the request field, Standard Webhooks signatures, the URL policy.

A job submitted with ``webhook: {url, events}`` has its transitions (``started``, ``progress``,
``completed``, ``failed``, ``canceled``) written to the webhook stream by the same Lua script that
makes the transition (see ``queue_scripts``), so no event is lost between the two; the API
process delivers them (``webhook_dispatch``). Deliveries are signed as the Standard Webhooks
scheme says (https://www.standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with the
base64-decoded bytes of a ``whsec_`` secret.

Outbound URLs are an SSRF risk: only ``https`` to public addresses is allowed (every address the
host resolves to is checked), unless ``webhook_allowed_hosts`` names the host or a network of
its addresses; then ``http`` is allowed too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from omost_renderer.job_queue import constants

#: Prefix of a Standard Webhooks signing secret; base64 of the key bytes follows.
SECRET_PREFIX = "whsec_"
#: Longest webhook URL accepted.
MAX_URL_CHARS = 2048
#: Seconds a webhook host may take to resolve at submit (and before each delivery).
RESOLVE_TIMEOUT_S = 5.0
#: Key name of the requests made without an API key (no keys configured).
ANONYMOUS_KEY = constants.OPEN_KEY_NAME

_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")

_HTTPS_ONLY = "webhooks use https; http only for hosts in OMOST_RENDERER_WEBHOOK_ALLOWED_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Resolves a host name and port to its addresses (``getaddrinfo``; tests may pass their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class WebhookEvent(StrEnum):
    """What a webhook can be sent for."""

    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


#: The events a webhook gets when its request names none: the job's end, however it ends.
DEFAULT_EVENTS = (WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.CANCELED)


class WebhookSpec(BaseModel):
    """``webhook`` of ``POST /v1/renders``: where to send the job's events, and which ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_URL_CHARS,
            description="Where deliveries are POSTed: https to a public host, unless the"
            " service allows the host (OMOST_RENDERER_WEBHOOK_ALLOWED_HOSTS).",
        ),
    ]
    events: Annotated[
        list[WebhookEvent],
        Field(
            min_length=1,
            max_length=len(WebhookEvent),
            description="Events to send; default: completed, failed, canceled.",
        ),
    ] = Field(default_factory=lambda: list(DEFAULT_EVENTS))

    def events_field(self) -> str:
        """The events as the job hash keeps them: ``,started,completed,`` (Lua finds ``,x,``)."""
        return "," + ",".join(sorted({str(event) for event in self.events})) + ","


class WebhookSecretError(ValueError):
    """A signing secret is not ``whsec_`` followed by base64."""


def secret_bytes(secret: str) -> bytes:
    """Return the key bytes of a ``whsec_<base64>`` secret.

    Raises:
        WebhookSecretError: The secret is not of that form, or its key is empty.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise WebhookSecretError(f"a webhook secret is {SECRET_PREFIX} + base64") from error
    if not key:
        raise WebhookSecretError("a webhook secret needs at least one key byte")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header of one delivery (``v1,<base64 HMAC-SHA256>``).

    Args:
        key: The secret's key bytes (``secret_bytes``).
        message_id: ``webhook-id``: the same for every attempt of one event.
        timestamp: ``webhook-timestamp``: Unix seconds of this attempt.
        body: The exact bytes sent.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def parse_secrets(raw: str) -> dict[str, bytes]:
    """Parse per-key secrets: comma-separated ``name=whsec_...`` pairs.

    Raises:
        WebhookSecretError: A pair is malformed or its secret is invalid.
    """
    secrets: dict[str, bytes] = {}
    for pair in raw.replace("\n", ",").split(","):
        if not pair.strip():
            continue
        name, sep, secret = pair.strip().partition("=")
        if not sep or not name.strip():
            raise WebhookSecretError("per-key webhook secrets are `name=whsec_...` pairs")
        secrets[name.strip()] = secret_bytes(secret.strip())
    return secrets


@dataclass(frozen=True)
class SigningKeys:
    """The secrets deliveries are signed with: one per API key name, else the service's own."""

    default: bytes | None
    per_key: Mapping[str, bytes]

    @classmethod
    def from_settings(cls, default: SecretStr | None, per_key: SecretStr | None) -> SigningKeys:
        """Build from ``webhook_secret`` and ``webhook_secrets`` (either may be unset)."""
        return cls(
            default=secret_bytes(default.get_secret_value()) if default else None,
            per_key=parse_secrets(per_key.get_secret_value()) if per_key else {},
        )

    def for_key(self, key_name: str) -> bytes | None:
        """The secret of an API key's webhooks; ``None`` when none is configured."""
        return self.per_key.get(key_name, self.default)


class WebhookURLError(ValueError):
    """A webhook URL the policy refuses; the message says why."""


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_public(address: IPAddress) -> bool:
    # `is_global` is false for private, loopback, link-local, shared (CGNAT) and reserved ranges.
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system's ``getaddrinfo`` (bounded by ``RESOLVE_TIMEOUT_S``)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class URLPolicy:
    """Which webhook URLs may be called: public https, plus the hosts and networks allowed."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]
    resolver: Resolver = system_resolver

    @classmethod
    def parse(cls, allowed: str, resolver: Resolver = system_resolver) -> URLPolicy:
        """Build from ``webhook_allowed_hosts``: comma-separated host names and CIDRs.

        Raises:
            ValueError: An entry is neither a host name nor a network.
        """
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip().lower() for part in allowed.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not _HOST_NAME.match(entry):
                    raise ValueError(f"{entry!r} is neither a host name nor a CIDR") from None
                hosts.add(entry.rstrip("."))
        return cls(hosts=frozenset(hosts), networks=tuple(networks), resolver=resolver)

    def _allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    async def check(self, url: str) -> list[str]:
        """Refuse a URL the policy does not allow; return the addresses its host resolves to.

        Raises:
            WebhookURLError: Not http(s), http to a host not allowed, no host, a host that does
                not resolve, or an address that is neither public nor allowed.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise WebhookURLError(f"not a valid URL: {error}") from None
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            raise WebhookURLError("a webhook URL is https://host/path")
        if parts.username is not None or parts.password is not None:
            raise WebhookURLError("a webhook URL carries no credentials")
        named = host in self.hosts
        try:
            literal: IPAddress | None = _unwrap(ipaddress.ip_address(host))
        except ValueError:
            literal = None
        if parts.scheme == "http" and not named and (literal is None) and not self.networks:
            raise WebhookURLError(_HTTPS_ONLY)  # no network allowed: refuse before any DNS
        if literal is not None:
            addresses = [str(literal)]
        elif named:
            return []  # a named host is trusted wherever it resolves
        else:
            try:
                addresses = await self.resolver(host, port or 443)
            except (OSError, TimeoutError) as error:
                raise WebhookURLError(f"the webhook host {host!r} does not resolve") from error
            if not addresses:
                raise WebhookURLError(f"the webhook host {host!r} does not resolve")
        ips = [_unwrap(ipaddress.ip_address(address.split("%")[0])) for address in addresses]
        trusted = named or all(self._allowed(ip) for ip in ips)
        if parts.scheme == "http" and not trusted:
            raise WebhookURLError(_HTTPS_ONLY)
        for ip in ips:
            if not (named or _is_public(ip) or self._allowed(ip)):
                raise WebhookURLError(
                    f"the webhook host {host!r} resolves to {ip}, a private, loopback or"
                    " link-local address (allow it with OMOST_RENDERER_WEBHOOK_ALLOWED_HOSTS)"
                )
        return addresses


class WebhookRefusedError(ValueError):
    """A webhook the service will not accept at submit; the message says why."""


@dataclass(frozen=True)
class WebhookAdmission:
    """Checks a submitted webhook and turns it into the job hash's fields."""

    policy: URLPolicy
    keys: SigningKeys
    progress_every: int

    async def job_fields(self, spec: WebhookSpec, key_name: str) -> dict[str, str]:
        """The fields the job's scripts read its webhook from.

        Args:
            spec: The request's ``webhook``.
            key_name: Name of the caller's API key (its deliveries are signed with its secret).

        Raises:
            WebhookRefusedError: No signing secret for the key, or the URL is refused.
        """
        if self.keys.for_key(key_name) is None:
            raise WebhookRefusedError(
                "webhooks need a signing secret: set OMOST_RENDERER_WEBHOOK_SECRET (or one for"
                " this API key in OMOST_RENDERER_WEBHOOK_SECRETS)"
            )
        try:
            await self.policy.check(spec.url)
        except WebhookURLError as error:
            raise WebhookRefusedError(str(error)) from None
        fields = {"webhook_url": spec.url, "webhook_events": spec.events_field()}
        if WebhookEvent.PROGRESS in spec.events:
            fields["webhook_every"] = str(self.progress_every)
        return fields
