"""Evidence in an S3-compatible object store under Object Lock in COMPLIANCE mode (boto3).

COMPLIANCE retention cannot be shortened or removed by any account, root included, until it
expires, so stored evidence cannot be deleted or replaced through the S3 API. Every object is put
with its own retain-until date (``[s3] retention_days``); the bucket must have Object Lock enabled
(checked at start). Tested against a real SeaweedFS (`weed mini`) on 127.0.0.1.

A locked version cannot change, but anyone with write access can still put a *new* version over
the key or a delete marker in front of it, and a plain GET then returns that. So every put returns
the version id S3 gave our object, the backend records it beside the row that acknowledged it, and
every read names that version. ``changed_since`` lists what was added later, so the backend can flag
it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendError
from . import WriteOnceViolation

SINGLE_PUT_MAX = 5 * 1024**3  # S3's largest single PUT; bigger goes multipart


class S3Store:
    name = "s3"
    slow_puts = True

    def __init__(self, cfg: Any) -> None:  # cfg: config.S3Config
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.cfg = cfg
        self.bucket = cfg.bucket
        kwargs: dict[str, Any] = {
            "region_name": cfg.region,
            "config": Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 5}, max_pool_connections=32
            ),
        }
        if cfg.endpoint_url:
            kwargs["endpoint_url"] = cfg.endpoint_url
        if cfg.access_key_id:
            kwargs["aws_access_key_id"] = cfg.access_key_id
            kwargs["aws_secret_access_key"] = cfg.secret_access_key
        self.client = boto3.client("s3", **kwargs)
        self._transfer = TransferConfig(multipart_threshold=256 << 20, multipart_chunksize=64 << 20)
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)
        self._check_bucket()

    def _check_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchBucket", "NotFound") and self.cfg.create_bucket:
                self.client.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
            else:
                raise BackendError(
                    f"[s3] bucket = {self.bucket!r}: not reachable ({code}); create it with "
                    "Object Lock enabled, or set create_bucket = true"
                ) from None
        except self._errors as e:
            raise BackendError(
                f"[s3] endpoint_url = {self.cfg.endpoint_url!r}: cannot reach S3 ({e})"
            ) from None
        try:
            lock = self.client.get_object_lock_configuration(Bucket=self.bucket)
            enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError:
            enabled = False
        if not enabled:
            raise BackendError(
                f"[s3] bucket = {self.bucket!r}: Object Lock is not enabled; evidence needs a "
                "bucket created with Object Lock (it cannot be turned on for most stores later)"
            )

    def _key(self, key: str) -> str:
        return self.cfg.prefix + key

    def _lock_args(self, sha256: str) -> dict[str, Any]:
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.cfg.retention_days)
        return {
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": until,
            "Metadata": {"sha256": sha256},
        }

    def _versions(self, key: str) -> list[dict[str, Any]]:
        """Every version and delete marker of exactly ``key``, oldest first."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(key)}
        while True:
            page = self.client.list_object_versions(**kwargs)
            for kind in ("Versions", "DeleteMarkers"):
                out += [{**v, "Marker": kind == "DeleteMarkers"} for v in page.get(kind, [])
                        if v["Key"] == self._key(key)]
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), VersionIdMarker=page.get("NextVersionIdMarker"))
        return sorted(out, key=lambda v: v["LastModified"])

    def _sha_of(self, key: str, version: str) -> str:
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key), VersionId=version)
        return head.get("Metadata", {}).get("sha256", "")

    def version_of(self, key: str, sha256: str) -> str:
        """The oldest version holding ``sha256``: ours, since the backend never puts over a stored key."""
        for v in self._versions(key):
            if not v["Marker"] and self._sha_of(key, v["VersionId"]) == sha256:
                return v["VersionId"]
        return ""

    def keys(self, prefix: str) -> list[str]:
        found: set[str] = set()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        while True:
            page = self.client.list_object_versions(**kwargs)
            found.update(v["Key"] for v in page.get("Versions", []))
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), VersionIdMarker=page.get("NextVersionIdMarker"))
        return sorted(k.removeprefix(self.cfg.prefix) for k in found)

    def first_version(self, key: str) -> str:
        return next((v["VersionId"] for v in self._versions(key) if not v["Marker"]), "")

    def _existing(self, key: str, sha256: str) -> str | None:
        """The version already holding these bytes (a duplicate put), None if the key is free; different
        bytes stored first are a WriteOnceViolation."""
        versions = [v for v in self._versions(key) if not v["Marker"]]
        if not versions:
            return None
        first = versions[0]["VersionId"]
        if self._sha_of(key, first) != sha256:
            raise WriteOnceViolation(f"{key}: already stored with different content; refusing to add a version")
        return first

    def put_file(self, key: str, path: Path, sha256: str) -> str:
        have = self._existing(key, sha256)
        if have is not None:
            return have
        size = path.stat().st_size
        if size <= SINGLE_PUT_MAX:
            with open(path, "rb") as body:
                r = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body,
                                           ContentLength=size, **self._lock_args(sha256))
            return r.get("VersionId", "")
        self.client.upload_file(  # multipart: the response carries no version id; look ours up by content
            str(path), self.bucket, self._key(key), ExtraArgs=self._lock_args(sha256), Config=self._transfer
        )
        return self.version_of(key, sha256)

    def flush(self) -> None:
        pass  # a successful PUT is durable in S3

    def put_bytes(self, key: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        have = self._existing(key, sha)
        if have is not None:
            return have
        r = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._lock_args(sha))
        return r.get("VersionId", "")

    def changed_since(self, key: str, version: str) -> str | None:
        later = [v for v in self._versions(key) if v["VersionId"] != version]
        if not later:
            return None
        markers = sum(v["Marker"] for v in later)
        parts = []
        if len(later) - markers:
            parts.append(f"{len(later) - markers} other version(s)")
        if markers:
            parts.append(f"{markers} delete marker(s)")
        return (f"{key}: {' and '.join(parts)} beside the acknowledged version {version or '(unrecorded)'}: "
                "written around the backend, which keeps serving the acknowledged one")

    def stamp(self, key: str, version: str) -> str:
        """The acknowledged version itself: Object Lock keeps its bytes unchangeable, and anything written
        beside it is reported by ``changed_since`` when the object is next read (a store_changed flag)."""
        return version

    def exists(self, key: str) -> bool:
        return any(not v["Marker"] for v in self._versions(key))

    def _version_args(self, version: str) -> dict[str, str]:
        return {"VersionId": version} if version else {}

    def size(self, key: str, version: str = "") -> int:
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(key), **self._version_args(version))
        return int(head["ContentLength"])

    def read(self, key: str, version: str = "") -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                      **self._version_args(version))["Body"].read()

    def stream(self, key: str, chunk: int = 1 << 20, version: str = "") -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **self._version_args(version))["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def extend_retention(self, key: str, version: str, until_ns: int) -> str | None:
        """Raise the version's COMPLIANCE retain-until date to ``until_ns`` if it is earlier (Object Lock
        only lets it grow); None on success, else why not."""
        until = dt.datetime.fromtimestamp(until_ns / 1e9, dt.UTC)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if version:
            args["VersionId"] = version
        try:
            current = self.client.get_object_retention(**args)["Retention"]["RetainUntilDate"]
            if current >= until:
                return None
            self.client.put_object_retention(**args, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
        except Exception as e:  # noqa: BLE001 - botocore's ClientError and connection errors alike
            return f"{key}: Object Lock retention not extended ({e})"
        return None

    def locked_until(self, key: str, version: str = "") -> int | None:
        """The version's COMPLIANCE retain-until date (ns since the epoch); None if it has none or the store
        cannot say (then ``expire`` is tried and its refusal reported)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), **self._version_args(version)}
        try:
            until = self.client.get_object_retention(**args)["Retention"]["RetainUntilDate"]
        except Exception:  # noqa: BLE001 - no retention set, or the store unreachable: let expire decide
            return None
        return int(until.timestamp() * 1e9)

    def expire(self, key: str, version: str = "") -> str | None:
        """Delete the acknowledged version once its retention is over; the store refuses while it holds
        (COMPLIANCE), and that refusal is returned, not raised."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if version:
            args["VersionId"] = version
        try:
            self.client.delete_object(**args)
        except Exception as e:  # noqa: BLE001
            return f"{key}: the store keeps it ({e})"
        return None

    def close(self) -> None:
        self.client.close()
