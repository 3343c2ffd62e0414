from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from omost_renderer.storage.stores import FileResultStore, image_key


def test_put_get_and_delete_attempt(tmp_path: Path) -> None:
    store = FileResultStore(tmp_path)
    store.put(image_key("job", 1, 0), b"one")
    store.put(image_key("job", 2, 0), b"two")
    assert store.get("job/1/0.png") == b"one"
    assert store.get("job/3/0.png") is None
    store.delete_prefix("job/1")
    assert store.get("job/1/0.png") is None
    assert store.get("job/2/0.png") == b"two"
    assert [p.name for p in (tmp_path / "job" / "2").iterdir()] == ["0.png"]  # no temp files


def test_keys_cannot_escape_the_folder(tmp_path: Path) -> None:
    store = FileResultStore(tmp_path / "results")
    with pytest.raises(ValueError, match="outside"):
        store.put("../evil.png", b"x")


def test_cleanup_removes_only_old_jobs(tmp_path: Path) -> None:
    store = FileResultStore(tmp_path)
    store.put("old/1/0.png", b"x")
    store.put("new/1/0.png", b"y")
    long_ago = time.time() - 3600
    os.utime(tmp_path / "old", (long_ago, long_ago))
    assert store.cleanup(older_than_s=60) == 1
    assert store.get("old/1/0.png") is None
    assert store.get("new/1/0.png") == b"y"
