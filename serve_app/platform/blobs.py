"""Blob storage for voice data and job audio, named by URL.

    file:///var/lib/qtts/blobs                       a local directory (the default)
    s3://bucket/prefix?endpoint_url=http://minio:9000&region=us-east-1
                                                     any S3-compatible store (boto3; credentials
                                                     from the usual AWS environment/roles)

Keys are relative paths made by the platform (`voices/<tenant>/<voice>/prompt`), never by a
client; a key that could leave the store's root is refused anyway.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from serve_app.platform.errors import ConfigurationError, NotFound

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]{0,254}$")


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"unsafe blob key {key!r}")
    return key


class BlobStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...


class LocalBlobStore:
    """A directory; writes are atomic (temporary file + rename)."""

    def __init__(self, root: Path):
        self.root = root.expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.url!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key!r} is missing") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3BlobStore:
    """A bucket (and optional key prefix) of any S3-compatible store."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client=None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" + (f"?endpoint_url={endpoint_url}" if endpoint_url else "")
        self._client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._client.exceptions.NoSuchKey as exc:
            raise NotFound(f"blob {key!r} is missing") from exc

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def open_blob_store(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigurationError("an s3:// blob store URL names a bucket: s3://bucket/prefix")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(query) - {"endpoint_url", "region"}
        if unknown:
            raise ConfigurationError(f"unknown s3 blob store options: {', '.join(sorted(unknown))}")
        return S3BlobStore(parsed.netloc, parsed.path, endpoint_url=query.get("endpoint_url"),
                           region=query.get("region"))
    raise ConfigurationError(f"blob store URL must be file:// or s3://, got {parsed.scheme or url!r}")
