"""Where result images live: files written atomically under a folder, or an S3-compatible store.

Keys look like ``<job id>/<attempt>/<n>.png``: each attempt writes its own files, so a stale
attempt can never overwrite the images of the attempt that won.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from omost_renderer.config import Settings


def image_key(job_id: str, attempt: int, n: int) -> str:
    """Return the storage key of result image ``n`` of one attempt of a job."""
    return f"{job_id}/{attempt}/{n}.png"


class ResultStore(Protocol):
    """A place for result images (blocking calls; the API runs them in a thread)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically: readers see all of it or nothing."""
        ...

    def get(self, key: str) -> bytes | None:
        """Return the bytes under ``key``, or ``None`` when there are none."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix`` (a job or an attempt)."""
        ...

    def cleanup(self, older_than_s: float) -> int:
        """Delete results older than ``older_than_s`` seconds; return how many jobs went."""
        ...


class FileResultStore:
    """Results as files under one folder; writes go to a temporary file, then ``os.replace``."""

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created when missing) as the results folder."""
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from job ids we generate, but never let one escape the folder.
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key outside the results folder: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write the file atomically (temporary file in the same folder, fsync, rename)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def get(self, key: str) -> bytes | None:
        """Read the file, or ``None`` when it does not exist."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete_prefix(self, prefix: str) -> None:
        """Delete the folder of a job (``<id>``) or of one attempt (``<id>/<attempt>``)."""
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)

    def cleanup(self, older_than_s: float) -> int:
        """Delete job folders not modified for ``older_than_s`` seconds."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for job_dir in self.root.iterdir():
            if job_dir.is_dir() and job_dir.stat().st_mtime < cutoff:
                shutil.rmtree(job_dir, ignore_errors=True)
                removed += 1
        return removed


class S3ResultStore:
    """Results in an S3-compatible bucket (``pip install omost-renderer[s3]``), under a prefix.

    Every object of the service lives under ``prefix`` (``omost-render/<job>/<attempt>/<n>.png``),
    and nothing here reads, lists or deletes outside it: the bucket may be shared. Expiry is best
    left to the bucket's lifecycle rules (on that prefix); ``cleanup`` also deletes old objects.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "omost-render/") -> None:
        """Use a boto3 S3 ``client``, a ``bucket`` name and the service's key ``prefix``."""
        if not prefix.strip("/"):
            raise ValueError("the S3 key prefix must not be empty: cleanup would see the bucket")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/"

    def _object_key(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        """Upload the object (a single PUT is atomic in S3)."""
        self.client.put_object(
            Bucket=self.bucket, Key=self._object_key(key), Body=data, ContentType="image/png"
        )

    def get(self, key: str) -> bytes | None:
        """Download the object, or ``None`` when it does not exist."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body

    def _objects(self, prefix: str) -> list[tuple[str, float]]:
        """Object keys under the service's prefix plus ``prefix``, with their modification time."""
        objects: list[tuple[str, float]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._object_key(prefix)):
            for item in page.get("Contents", []):
                objects.append((item["Key"], item["LastModified"].timestamp()))
        return objects

    def _delete(self, object_keys: list[str]) -> None:
        # One request per 1000 keys (the API's limit) rather than one per key.
        for start in range(0, len(object_keys), 1000):
            batch = [{"Key": key} for key in object_keys[start : start + 1000]]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            # A batch delete answers 200 even when some keys failed: those come back as errors.
            failed = answer.get("Errors") or []
            if failed:
                first = failed[0]
                raise OSError(
                    f"S3 could not delete {len(failed)} objects, e.g. {first.get('Key')!r}:"
                    f" {first.get('Code')} {first.get('Message')}"
                )

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object of the job (``<id>``) or attempt (``<id>/<attempt>``) ``prefix``."""
        # A bare string prefix would also match ``<id>/10`` for ``<id>/1``, or ``<id>x`` for
        # ``<id>``: like the file store's folders, a prefix covers whole path segments only.
        self._delete([key for key, _ in self._objects(prefix.rstrip("/") + "/")])

    def cleanup(self, older_than_s: float) -> int:
        """Delete the service's objects older than ``older_than_s`` s; return how many jobs."""
        cutoff = time.time() - older_than_s
        old = [key for key, modified in self._objects("") if modified < cutoff]
        self._delete(old)
        return len({key.removeprefix(self.prefix).split("/", 1)[0] for key in old})


def build_store(settings: Settings) -> ResultStore:
    """Build the result store the settings ask for."""
    if settings.storage == "file":
        return FileResultStore(settings.results_dir)
    if not settings.s3_bucket:
        raise ValueError("OMOST_RENDERER_S3_BUCKET must be set when OMOST_RENDERER_STORAGE=s3")
    import boto3  # optional dependency (the `s3` extra), only for storage=s3

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=(
            settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
        ),
        aws_secret_access_key=(
            settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None
        ),
    )
    return S3ResultStore(client, settings.s3_bucket, settings.s3_prefix)
