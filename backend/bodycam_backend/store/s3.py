"""Evidence in an S3-compatible object store under Object Lock in COMPLIANCE mode (boto3).

COMPLIANCE retention cannot be shortened or removed by any account, root included, until it
expires, so stored evidence cannot be deleted or replaced through the S3 API. Every object is put
with its own retain-until date (``[s3] retention_days``); the bucket must have Object Lock enabled
(checked at start). Tested against a real SeaweedFS (`weed mini`) on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendError
from . import WriteOnceViolation


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

    def _existing_sha(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head.get("Metadata", {}).get("sha256", "")

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        have = self._existing_sha(key)
        if have is not None:
            if have != sha256:
                raise WriteOnceViolation(
                    f"{key}: already stored with different content; refusing to add a version"
                )
            return
        self.client.upload_file(
            str(path), self.bucket, self._key(key), ExtraArgs=self._lock_args(sha256), Config=self._transfer
        )

    def flush(self) -> None:
        pass  # a successful PUT is durable in S3

    def put_bytes(self, key: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        have = self._existing_sha(key)
        if have is not None:
            if have != sha:
                raise WriteOnceViolation(
                    f"{key}: already stored with different content; refusing to add a version"
                )
            return
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._lock_args(sha))

    def exists(self, key: str) -> bool:
        return self._existing_sha(key) is not None

    def size(self, key: str) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def stream(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def close(self) -> None:
        self.client.close()
