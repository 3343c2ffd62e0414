"""API keys of both services: parsing the setting, keeping only hashes, constant-time lookup.

A key setting (``OMOST_LLM_API_KEYS``, ``OMOST_RENDERER_API_KEYS``) is comma-separated
``name=key`` pairs, or ``@/path/to/file`` with one pair a line (blank lines and ``#`` comments
skipped). A key may be given as its hash, ``name=sha256:<64 hex digits>``, so the file need not
hold the key itself. The same name may appear with two keys: both are valid and act as one caller
(rotation without a gap; jobs stay visible to the new key). Only SHA-256 digests are kept; a
presented key is hashed and compared with every stored digest by ``hmac.compare_digest``.

Callers present a key as ``Authorization: Bearer <key>`` (what the openai SDK sends for
``api_key=``). A wrong or missing key answers 401 in OpenAI's envelope with
``WWW-Authenticate: Bearer``. Nothing here imports a web framework.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from omost_schema.errors import ErrorResponse

#: Shortest key accepted in clear: shorter keys can be guessed.
MIN_KEY_CHARS = 16
#: A key's name: it goes into logs, metrics and job records, so it is kept plain.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_BEARER = re.compile(r"^Bearer[ \t]+(\S+)[ \t]*$", re.IGNORECASE)

#: ``error.code`` of the 401 answer to a request without a key.
MISSING_KEY_CODE = "missing_api_key"
#: ``error.code`` of the 401 answer to a request with a key that is not known.
INVALID_KEY_CODE = "invalid_api_key"
#: Headers of every 401 answer (RFC 6750).
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}
#: The 401 answer as an OpenAPI ``(status, description)`` for ``error_responses``.
UNAUTHORIZED_DOC = (401, "The API key is missing or wrong (`Authorization: Bearer <key>`).")

logger = logging.getLogger(__name__)


class ApiKeySettingError(ValueError):
    """A key setting that cannot be read (bad pair, short key, unreadable file)."""


@dataclass(frozen=True)
class ApiKey:
    """One valid key: its name and the SHA-256 digest of the key."""

    name: str
    digest: bytes


def hash_key(key: str) -> str:
    """Return the stored form of a key, ``sha256:<hex>`` (to put in a key file instead of it).

    Args:
        key: The key as clients send it.
    """
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _parse_pair(text: str, where: str) -> ApiKey:
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not NAME_PATTERN.match(name):
        raise ApiKeySettingError(
            f"{where}: expected name=key with a name of letters, digits, '.', '_', '-'"
        )
    hashed = _HASHED.match(value)
    if hashed:
        return ApiKey(name, bytes.fromhex(hashed.group(1)))
    if len(value) < MIN_KEY_CHARS:
        raise ApiKeySettingError(
            f"{where}: the key of {name!r} is shorter than {MIN_KEY_CHARS} characters"
        )
    return ApiKey(name, hashlib.sha256(value.encode()).digest())


def _read_file(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def parse_keys(spec: str, read_file: Callable[[Path], str] = _read_file) -> list[ApiKey]:
    """Parse a key setting into named digests.

    Args:
        spec: ``name=key,name2=sha256:<hex>``, or ``@/path`` to a file of one pair a line.
        read_file: Reads the file of an ``@`` setting (a seam for tests).

    Returns:
        The keys, in the order given; empty for an empty setting.

    Raises:
        ApiKeySettingError: A pair is malformed, a key too short, a key given twice, or the file
            cannot be read.
    """
    spec = spec.strip()
    if spec.startswith("@"):
        path = Path(spec[1:].strip())
        try:
            text = read_file(path)
        except OSError as error:
            raise ApiKeySettingError(f"cannot read the key file {path}: {error}") from error
        items = [
            (f"{path}:{number}", line.strip())
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")
        ]
    else:
        items = [(f"pair {n}", part.strip()) for n, part in enumerate(spec.split(","), 1)]
        items = [(where, part) for where, part in items if part]
    keys = [_parse_pair(text, where) for where, text in items]
    digests = [key.digest for key in keys]
    if len(set(digests)) != len(digests):
        raise ApiKeySettingError("the same key is given twice")
    return keys


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not authorization:
        return None
    match = _BEARER.match(authorization)
    return match.group(1) if match else None


class KeyRing:
    """The valid keys of a service, as digests; an empty ring means the service is open.

    Args:
        keys: The keys, from :func:`parse_keys`.
    """

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def from_setting(cls, spec: str) -> KeyRing:
        """Build the ring from a key setting (see :func:`parse_keys`)."""
        return cls(parse_keys(spec))

    @property
    def is_open(self) -> bool:
        """Whether no key is configured (every request is let in)."""
        return not self._keys

    @property
    def names(self) -> list[str]:
        """The distinct key names, in the order given."""
        return list(dict.fromkeys(key.name for key in self._keys))

    def lookup(self, token: str) -> str | None:
        """Return the name of the key ``token`` is, or ``None``.

        The token's digest is compared with every stored digest in constant time, and the loop
        never stops early, so the time taken tells nothing about which key is close.
        """
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key.name
        return found

    def authenticate(self, authorization: str | None) -> tuple[str | None, str | None]:
        """Check an ``Authorization`` header.

        Args:
            authorization: The header's value, if any.

        Returns:
            ``(name, None)`` for a valid key, or ``(None, code)`` with ``MISSING_KEY_CODE`` or
            ``INVALID_KEY_CODE``.
        """
        token = bearer_token(authorization)
        if token is None:
            return None, MISSING_KEY_CODE
        name = self.lookup(token)
        return (name, None) if name is not None else (None, INVALID_KEY_CODE)


def unauthorized_message(code: str) -> str:
    """The 401 answer's message for a missing or invalid key."""
    if code == MISSING_KEY_CODE:
        return (
            "This service requires an API key: send it as `Authorization: Bearer <key>`"
            " (the openai SDK's `api_key`)."
        )
    return "The API key is not valid for this service."


def unauthorized_body(code: str) -> ErrorResponse:
    """OpenAI's 401 envelope for a missing or invalid key.

    Args:
        code: ``MISSING_KEY_CODE`` or ``INVALID_KEY_CODE``.
    """
    return ErrorResponse.build(unauthorized_message(code), "invalid_request_error", code=code)


def service_keys(spec: str, *, required: bool, setting: str) -> KeyRing:
    """Build a service's key ring at start-up, refusing to run open when keys are required.

    Logs the outcome: a loud warning when the service runs open, else the key names.

    Args:
        spec: The key setting's value.
        required: The service's ``require_api_keys``.
        setting: The key setting's environment name, for the message.

    Raises:
        ApiKeySettingError: The setting cannot be read, or it is empty and keys are required.
    """
    keys = KeyRing.from_setting(spec)
    if keys.is_open and required:
        raise ApiKeySettingError(
            f"{setting} is empty but API keys are required (require_api_keys): set {setting}"
            " to name=key pairs or @/path/to/file"
        )
    if keys.is_open:
        logger.warning(_OPEN_WARNING, setting)
    else:
        logger.info("API keys required; %d key names: %s", len(keys.names), ", ".join(keys.names))
    return keys


_OPEN_WARNING = (
    "NO API KEYS ARE CONFIGURED: every request is let in without a key. Set %s to require"
    " `Authorization: Bearer <key>` (keep the service on 127.0.0.1 until you do)."
)
