"""Content-addressed object store on the S3 API (any S3-compatible service), for spool, outbox and quarantine
shared by several machines.

Same contract as the local :class:`gateway.core.spool.ContentStore`: ``put`` returns only after the service
acknowledged the whole object (its SHA-256 checked by the service), keys are derived from the bytes' hash
and never from received text, and every failure to reach the service raises :class:`StoreUnavailable`, an
``OSError``, so the receive path answers 0xA700 exactly as for a full disk. boto3 is imported lazily: the
single-machine default never loads it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.core.spool import ContentStore, StoredFile, Writer, sha256_hex, write_all


class StoreUnavailable(OSError):
    """The object store did not take or give the object (unreachable, refused, timed out)."""


@dataclass(frozen=True)
class StoredObject:
    relpath: str
    modified_at: float  # epoch seconds of the last PUT (a rewrite of the same bytes refreshes it)


class S3Store:
    """``<prefix><area>/ab/abcdef….dcm`` objects in one bucket; thread-safe (one boto3 client per thread)."""

    def __init__(self, settings: Any, area: str, suffix: str = ".dcm") -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.base = f"{settings.prefix}{area}/"
        self.suffix = suffix
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import boto3
            from botocore.config import Config

            s = self.settings
            config = Config(
                connect_timeout=s.connect_timeout_s,
                read_timeout=s.read_timeout_s,
                retries={"max_attempts": s.max_attempts, "mode": "standard"},
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=s.endpoint_url, region_name=s.region, config=config
            )
            self._local.client = client
        return client

    def key(self, relpath: str) -> str:
        return self.base + relpath

    def put(self, data: bytes, digest: str | None = None) -> StoredFile:
        """Store bytes; returns after the PUT was acknowledged. Same bytes twice: the same key, rewritten.
        ``digest``: the sha256 of ``data`` when the caller already hashed it (as :meth:`ContentStore.put`)."""
        digest = digest or sha256_hex(data)
        rel = f"{digest[:2]}/{digest}{self.suffix}"
        extra: dict[str, Any] = {}
        if self.settings.server_side_encryption:
            extra["ServerSideEncryption"] = self.settings.server_side_encryption
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        self._call("put_object", Key=self.key(rel), Body=data, ChecksumSHA256=checksum, **extra)
        return StoredFile(sha256=digest, relpath=rel, size=len(data))

    def read(self, relpath: str) -> bytes:
        body = self._call("get_object", Key=self.key(relpath))["Body"]
        try:
            return bytes(body.read())
        except Exception as exc:  # a connection reset mid-body
            raise StoreUnavailable(f"s3-read:{type(exc).__name__}") from exc

    def discard(self, relpath: str) -> None:
        self._call("delete_object", Key=self.key(relpath))

    def pages(self, page_size: int = 1000) -> Iterator[list[StoredObject]]:
        """Every object of this area, one ListObjectsV2 page (at most ``page_size`` keys) at a time."""
        paginator = self._client().get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.base, PaginationConfig={"PageSize": page_size}
        )
        try:
            for page in pages:
                yield [
                    StoredObject(o["Key"][len(self.base) :], o["LastModified"].timestamp())
                    for o in page.get("Contents", ())
                ]
        except Exception as exc:
            raise StoreUnavailable(f"s3-list:{type(exc).__name__}") from exc

    def relpaths(self) -> set[str]:
        """Every object of this area (for the doctor and tests)."""
        return {o.relpath for page in self.pages() for o in page}

    def modified_at(self, relpath: str) -> float | None:
        """When the object was last written; None when there is none."""
        from botocore.exceptions import ClientError

        try:
            head = self._client().head_object(Bucket=self.bucket, Key=self.key(relpath))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreUnavailable(f"s3-head:{type(exc).__name__}") from exc
        except Exception as exc:
            raise StoreUnavailable(f"s3-head:{type(exc).__name__}") from exc
        return float(head["LastModified"].timestamp())

    def exists(self, relpath: str) -> bool:
        return self.modified_at(relpath) is not None

    def clean_temp_files(self) -> int:
        return 0  # a PUT is atomic: an interrupted upload leaves no object

    def check(self) -> str:
        """Raise :class:`StoreUnavailable` unless the bucket answers; returns a description for the doctor."""
        self._call("head_bucket")
        return f"s3://{self.bucket}/{self.base} ({self.settings.endpoint_url or 'AWS'})"

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(), method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # botocore: EndpointConnectionError, ClientError, ReadTimeout, ...
            raise StoreUnavailable(f"s3-{method}:{type(exc).__name__}") from exc


AREAS = {"spool": ".dcm", "outbox": ".dcm", "quarantine": ".bin"}


def open_store(config: Any, area: str, writer: Writer = write_all) -> ContentStore | S3Store:
    """The store of one area (spool | outbox | quarantine): a local folder under the data dir by default, or
    the S3 bucket named by ``object_store`` in the service config."""
    suffix = AREAS[area]
    if config.object_store is None:
        return ContentStore(config.data_dir / area, writer=writer, suffix=suffix)
    return S3Store(config.object_store, area, suffix)
