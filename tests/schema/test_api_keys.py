"""API key settings: pairs, key files, stored hashes, rotation, Bearer headers, the 401 envelope."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from omost_schema.api_keys import (
    INVALID_KEY_CODE,
    MISSING_KEY_CODE,
    ApiKeySettingError,
    KeyRing,
    bearer_token,
    hash_key,
    parse_keys,
    service_keys,
    unauthorized_body,
)

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"


def test_pairs_are_parsed_and_only_digests_are_kept() -> None:
    keys = parse_keys(f" alice={ALICE} , bob={BOB},")
    assert [key.name for key in keys] == ["alice", "bob"]
    assert all(ALICE.encode() not in key.digest for key in keys)
    ring = KeyRing(keys)
    assert ring.lookup(ALICE) == "alice"
    assert ring.lookup(BOB) == "bob"
    assert ring.lookup(ALICE + "x") is None
    assert ring.names == ["alice", "bob"]


def test_a_key_file_holds_one_pair_a_line_with_comments_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# the team's keys\n\nalice={hash_key(ALICE)}\nbob = {BOB}\n")
    ring = KeyRing.from_setting(f"@{path}")
    assert ring.lookup(ALICE) == "alice"
    assert ring.lookup(BOB) == "bob"
    assert ring.lookup(hash_key(ALICE)) is None  # the stored hash is not itself a key


def test_two_keys_of_one_name_are_both_valid_for_rotation() -> None:
    ring = KeyRing.from_setting(f"alice={ALICE},alice={BOB}")
    assert ring.lookup(ALICE) == ring.lookup(BOB) == "alice"
    assert ring.names == ["alice"]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("alice", "expected name=key"),
        ("=0123456789abcdefgh", "expected name=key"),
        ("al ice=0123456789abcdefgh", "expected name=key"),
        ("alice=short", "shorter than 16"),
        (f"alice={ALICE},bob={ALICE}", "given twice"),
        ("@/nonexistent/keys", "cannot read the key file"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(spec: str, why: str) -> None:
    with pytest.raises(ApiKeySettingError, match=why):
        parse_keys(spec)


def test_an_empty_setting_leaves_the_service_open() -> None:
    assert KeyRing.from_setting("").is_open
    assert KeyRing.from_setting(" , ").is_open
    assert not KeyRing.from_setting(f"alice={ALICE}").is_open


def test_service_keys_warns_when_open_and_refuses_to_run_open_when_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="omost_schema.api_keys"):
        assert service_keys("", required=False, setting="OMOST_X_API_KEYS").is_open
        service_keys(f"alice={ALICE}", required=False, setting="OMOST_X_API_KEYS")
    warning, info = caplog.records
    assert warning.levelno == logging.WARNING
    assert "NO API KEYS" in warning.getMessage()
    assert "OMOST_X_API_KEYS" in warning.getMessage()
    assert info.levelno == logging.INFO
    assert "alice" in info.getMessage()
    with pytest.raises(ApiKeySettingError, match="OMOST_X_API_KEYS is empty"):
        service_keys("", required=True, setting="OMOST_X_API_KEYS")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {ALICE}", ALICE),
        (f"bearer   {ALICE} ", ALICE),
        (f"Basic {ALICE}", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_tokens_are_read_from_the_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_authenticate_tells_a_missing_key_from_a_wrong_one() -> None:
    ring = KeyRing.from_setting(f"alice={ALICE}")
    assert ring.authenticate(f"Bearer {ALICE}") == ("alice", None)
    assert ring.authenticate(None) == (None, MISSING_KEY_CODE)
    assert ring.authenticate("Bearer wrong-key-0123456789") == (None, INVALID_KEY_CODE)


def test_the_401_body_is_openais_envelope() -> None:
    body = unauthorized_body(INVALID_KEY_CODE).model_dump()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert "not valid" in body["error"]["message"]
    assert "Bearer" in unauthorized_body(MISSING_KEY_CODE).error.message
