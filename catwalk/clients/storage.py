"""Blob stores: where videos, posters and keyframes live.

Two implementations of ``clients.base.BlobStore``; ``clients.factory.blob_store`` picks one
from ``STORAGE_BACKEND``.

``LocalBlobStore`` (``local``, the embedded default): files under ``CATWALK_HOME/media``,
written atomically (temp file, fsync, rename) so a crash never leaves a half file under a real
key. URLs are ``file://`` URLs, for this machine only: the API serves the files under
``/media`` and the dashboard under signed ``/catwalk-media`` links (``dashboards/media_links.py``).

``S3BlobStore`` (``s3``): any S3-compatible store (AWS S3, Cloudflare R2, MinIO) through
prefect-aws: an ``S3Bucket`` block with ``AwsCredentials`` and
``AwsClientParameters(endpoint_url=...)``. What goes through the block, and what goes to the
boto3 client underneath it (``AwsCredentials.get_s3_client()``, the same cached client the block
uses) and why:

- uploads: ``S3Bucket.upload_from_path`` / ``upload_from_file_object``. The block forwards
  extra keyword arguments to boto3's managed transfer, which is how ``ExtraArgs``
  (ContentType, CacheControl) and ``Config`` (a ``TransferConfig`` with our multipart threshold
  and part size) reach it; the block has no parameters of its own for them.
- downloads: ``S3Bucket.read_path``.
- ``head_object`` (size, ETag, checksums, for verification), ``head_bucket`` (to tell a missing
  object from a missing bucket: a HEAD 404 has no error code), ``delete_object`` (the block's
  ``delete`` deletes the *block document*, not an object) and ``generate_presigned_url``: the
  block has no method for any of these, so they go to the boto3 client.

Every upload is verified before its key is handed back, so nothing can point at it unchecked:
the stored size must equal the local size, and the ETag must equal the MD5 we computed while
reading the file (for a multipart upload, the MD5 of the parts' MD5s plus ``-N``, which AWS and
R2 both produce). Where the ETag is not an MD5 (SSE-KMS or SSE-C encrypted buckets), the
stored CRC32 checksum is compared instead when the store returns one, else size only.
(The publish step also downloads and decodes the stored video before switching the product.)

botocore errors are translated here into ``StorageError`` (missing bucket, rejected
credentials, access denied: retrying will not help) or ``TransientStorageError`` (unreachable
endpoint, timeouts, 5xx, throttling), with messages built from the bucket, key, endpoint and
the store's error code only: never from credentials or request headers.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import SecretStr

from catwalk.clients.keys import content_type_for
from catwalk.domain import StoredObject
from catwalk.errors import StorageError, TransientStorageError

# Keys are never reused (a new job gets new keys), so what is stored under one never changes:
# browsers and CDNs may cache it for as long as they like.
CACHE_CONTROL = "public, max-age=31536000, immutable"
_COPY_CHUNK = 1024 * 1024


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"local disk is full: cannot store {what}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"no permission to write {what}")
    return StorageError(f"cannot store {what}: {exc.strerror or exc}")


class LocalBlobStore:
    """Files on this machine's disk, addressed by ``file://`` URLs."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError(f"refusing a key outside the media folder: {key!r}")
        return path

    def _write(self, key: str, source: io.BufferedIOBase | io.BytesIO) -> tuple[int, str]:
        """Copy ``source`` to ``key`` atomically; returns (size, md5 hex)."""
        path = self._path(key)
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    while chunk := source.read(_COPY_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _storage_error(exc, key) from exc
        return size, digest.hexdigest()

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        size, md5 = self._write(key, io.BytesIO(data))
        return self._verified(key, size, md5, content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        try:
            source = path.open("rb")
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with source:
            size, md5 = self._write(key, source)
        return self._verified(key, size, md5, content_type)

    def _verified(self, key: str, size: int, md5: str, content_type: str) -> StoredObject:
        head = self.head(key)
        if head is None or head.size != size:
            raise StorageError(f"stored {key} does not match its source after writing")
        return StoredObject(key=key, size=size, content_type=content_type, checksum=md5)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"stored file missing: {key}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read stored file {key}: {exc.strerror or exc}") from exc

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return StoredObject(key=key, size=path.stat().st_size, content_type=content_type_for(key))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc
        # Tidy empty job folders so "one video file per product" is visible on disk too.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def public_url(self, key: str) -> str:
        return self.url(key)

    def local_path(self, key: str) -> Path:
        return self._path(key)


@dataclass(frozen=True, slots=True)
class _Digests:
    """What we know about the bytes we sent, to compare with what the store kept."""

    size: int
    etag: str  # the ETag S3 gives these bytes uploaded the way we upload them
    crc32: str  # base64 of the big-endian CRC32, as S3's ChecksumCRC32
    multipart: bool


class S3BlobStore:
    """An S3-compatible bucket (AWS S3, Cloudflare R2, MinIO), via prefect-aws and boto3."""

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        public_base_url: str | None = None,
        multipart_threshold_bytes: int = 8 * 1024 * 1024,
        signed_urls: bool = False,
        signed_url_ttl_seconds: int = 3600,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        _import_boto()
        from boto3.s3.transfer import TransferConfig
        from prefect_aws import AwsClientParameters, AwsCredentials
        from prefect_aws.s3 import S3Bucket

        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.signed_urls = signed_urls
        self.signed_url_ttl_seconds = signed_url_ttl_seconds
        self.part_size = multipart_threshold_bytes
        botocore_config: dict[str, Any] = {
            # SigV4 everywhere: R2 accepts nothing else, and presigned URLs carry X-Amz-Expires.
            "signature_version": "s3v4",
            "connect_timeout": connect_timeout_seconds,
            "read_timeout": read_timeout_seconds,
            # botocore's own quick retries for a blip; the flow's task retries do the rest.
            "retries": {"mode": "standard", "max_attempts": max_attempts},
        }
        if self.endpoint_url:
            # S3-compatible stores: path-style addressing works on all of them (MinIO needs it),
            # and boto3's default CRC32 trailers (since 1.36) are rejected by R2 and others,
            # so only send checksums an operation requires; the ETag check covers integrity.
            botocore_config["s3"] = {"addressing_style": "path"}
            botocore_config["request_checksum_calculation"] = "when_required"
            botocore_config["response_checksum_validation"] = "when_required"
        self._credentials = AwsCredentials(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=SecretStr(secret_access_key) if secret_access_key else None,
            region_name=region,
            aws_client_parameters=AwsClientParameters(
                endpoint_url=self.endpoint_url, config=botocore_config
            ),
        )
        self._bucket_block = S3Bucket(bucket_name=bucket, credentials=self._credentials)
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=multipart_threshold_bytes,
            # The classic transfer manager, so part sizes (and so multipart ETags) are ours.
            preferred_transfer_client="classic",
        )

    @classmethod
    def from_settings(cls, settings: Any) -> S3BlobStore:
        from catwalk.errors import ConfigError

        if not settings.s3_bucket:
            raise ConfigError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        return cls(
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=(
                settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
            ),
            secret_access_key=(
                settings.s3_secret_access_key.get_secret_value()
                if settings.s3_secret_access_key
                else None
            ),
            endpoint_url=settings.s3_endpoint_url,
            public_base_url=settings.s3_public_base_url,
            multipart_threshold_bytes=settings.s3_multipart_threshold_bytes,
            signed_urls=settings.signed_urls,
            signed_url_ttl_seconds=settings.signed_url_ttl_seconds,
        )

    @property
    def _client(self) -> Any:
        # prefect-aws caches one client per credentials, so this is cheap after the first call.
        return self._credentials.get_s3_client()

    @property
    def _where(self) -> str:
        return _safe_endpoint(self.endpoint_url) if self.endpoint_url else f"AWS {self.region}"

    # Writing ------------------------------------------------------------------------------

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        try:
            with path.open("rb") as fh:
                digests = self._digests(fh)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            self._bucket_block.upload_from_path(
                path, key, ExtraArgs=self._extra_args(content_type), Config=self._transfer
            )
        except _S3_ERRORS as exc:
            raise self._translate(exc, "upload", key) from exc
        return self._verify(key, digests, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        digests = self._digests(io.BytesIO(data))
        try:
            self._bucket_block.upload_from_file_object(
                io.BytesIO(data),
                key,
                ExtraArgs=self._extra_args(content_type),
                Config=self._transfer,
            )
        except _S3_ERRORS as exc:
            raise self._translate(exc, "upload", key) from exc
        return self._verify(key, digests, content_type)

    @staticmethod
    def _extra_args(content_type: str) -> dict[str, str]:
        return {"ContentType": content_type, "CacheControl": CACHE_CONTROL}

    def _digests(self, source: io.BufferedIOBase | io.BytesIO) -> _Digests:
        """MD5 (whole and per part, as the transfer will split it) and CRC32 of ``source``."""
        from s3transfer.utils import ChunksizeAdjuster

        whole = hashlib.md5(usedforsecurity=False)
        parts: list[bytes] = []
        crc = 0
        size = 0
        # Read in the transfer's part size so the per-part MD5s match what S3 computes.
        while chunk := source.read(self.part_size):
            whole.update(chunk)
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
        crc32 = base64.b64encode(crc.to_bytes(4, "big")).decode()
        if size < self._transfer.multipart_threshold:
            return _Digests(size=size, etag=whole.hexdigest(), crc32=crc32, multipart=False)
        part_size = ChunksizeAdjuster().adjust_chunksize(self.part_size, size)
        if part_size != self.part_size:
            # Very large files get bigger parts (S3 allows 10,000); hash again in those.
            source.seek(0)
            parts = []
            while chunk := source.read(part_size):
                parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
        etag = f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
        return _Digests(size=size, etag=etag, crc32=crc32, multipart=True)

    def _verify(self, key: str, sent: _Digests, content_type: str) -> StoredObject:
        """Check the stored object against what we sent, before anything points at it."""
        head = self._head_raw(key)
        if head is None:
            raise StorageError(f"uploaded {key} is not in bucket {self.bucket!r}")
        size = int(head.get("ContentLength", -1))
        if size != sent.size:
            raise StorageError(
                f"uploaded {key} is {size} bytes in bucket {self.bucket!r}, expected {sent.size}"
            )
        etag = str(head.get("ETag", "")).strip('"')
        encrypted = head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or head.get(
            "SSECustomerAlgorithm"
        )
        checksum: str | None
        if etag == sent.etag:
            checksum = etag
        elif encrypted:
            # KMS/SSE-C ETags are not MD5s; compare the store's CRC32 when it has a whole one.
            stored_crc = head.get("ChecksumCRC32")
            if stored_crc and not sent.multipart and stored_crc != sent.crc32:
                raise StorageError(f"uploaded {key} does not match its source (CRC32 differs)")
            checksum = f"crc32:{stored_crc}" if stored_crc and not sent.multipart else None
        else:
            raise StorageError(
                f"uploaded {key} does not match its source (ETag {etag!r}, expected {sent.etag!r})"
            )
        return StoredObject(key=key, size=size, content_type=content_type, checksum=checksum)

    # Reading ------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        try:
            # read_path is sync_compatible (bytes or a coroutine); called from sync code: bytes.
            return cast(bytes, self._bucket_block.read_path(key))
        except _S3_ERRORS as exc:
            raise self._translate(exc, "download", key) from exc

    def _head_raw(self, key: str) -> dict[str, Any] | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except _S3_ERRORS as exc:
            if _status(exc) != 404:
                raise self._translate(exc, "check", key) from exc
        # A HEAD 404 carries no error code: make sure it is the object, not the bucket.
        self._check_bucket()
        return None

    def head(self, key: str) -> StoredObject | None:
        head = self._head_raw(key)
        if head is None:
            return None
        return StoredObject(
            key=key,
            size=int(head.get("ContentLength", 0)),
            content_type=str(head.get("ContentType", "")),
            checksum=str(head.get("ETag", "")).strip('"') or None,
        )

    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except _S3_ERRORS as exc:
            raise self._translate(exc, "bucket check", None) from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except _S3_ERRORS as exc:
            raise self._translate(exc, "delete", key) from exc

    # Addresses ----------------------------------------------------------------------------

    def url(self, key: str) -> str:
        """The URL to hand out now: presigned when SIGNED_URLS is on, else the public one."""
        if not self.signed_urls:
            return self.public_url(key)
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.signed_url_ttl_seconds,
            )
        except _S3_ERRORS as exc:
            raise self._translate(exc, "signing", key) from exc

    def public_url(self, key: str) -> str:
        """The object's lasting address (never expires; needs a public bucket or CDN to read)."""
        path = quote(key, safe="/")
        if self.public_base_url:
            return f"{self.public_base_url}/{path}"
        if self.endpoint_url:
            return f"{self.endpoint_url}/{quote(self.bucket)}/{path}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{path}"

    # Errors -------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, action: str, key: str | None) -> StorageError:
        """One clear line for an admin; never credentials, never request headers."""
        from boto3.exceptions import S3UploadFailedError
        from botocore import exceptions as bce

        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, S3UploadFailedError):
            # boto3 wraps the ClientError in a message (implicitly chained): use the original.
            exc = exc.__cause__ or exc.__context__ or exc
        what = f"{action} of {key}" if key else action
        bucket = f"bucket {self.bucket!r} at {self._where}"
        if isinstance(exc, bce.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = _status(exc)
            if code in ("NoSuchBucket",) or (status == 404 and key is None):
                return StorageError(f"S3 {bucket} does not exist (create it, or fix S3_BUCKET)")
            if code in _BAD_CREDENTIALS:
                return StorageError(
                    f"S3 rejected the credentials for {bucket} ({code}): "
                    "check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
                )
            if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
                return StorageError(
                    f"S3 denied access to {bucket} during {what}: check S3_ACCESS_KEY_ID, "
                    "S3_SECRET_ACCESS_KEY and the key's permissions on the bucket"
                )
            if code in ("NoSuchKey", "404") or status == 404:
                return StorageError(f"stored file missing: {key} in {bucket}")
            if code in _TRANSIENT_CODES or (status is not None and status >= 500):
                return TransientStorageError(f"S3 {what} failed in {bucket}: {code or status}")
            return StorageError(f"S3 {what} failed in {bucket}: {code or status}")
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return StorageError(
                "no S3 credentials found: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
            )
        if isinstance(
            exc,
            bce.EndpointConnectionError
            | bce.ConnectTimeoutError
            | bce.ReadTimeoutError
            | bce.ConnectionClosedError
            | bce.ConnectionError,
        ):
            return TransientStorageError(
                f"cannot reach the storage endpoint {self._where} during {what}"
            )
        if isinstance(exc, OSError):
            return _storage_error(exc, key or self.bucket)
        return StorageError(f"S3 {what} failed in {bucket}: {type(exc).__name__}")


_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "Unauthorized",  # R2's answer to a bad token
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


# What the S3 calls raise: botocore's errors, boto3's upload wrapper, and OSError from the
# local side of a transfer. Anything else is a bug and keeps its own traceback. Filled in by
# _import_boto() when the first S3BlobStore is made: boto3 costs ~0.1 CPU-s to import, and
# a flow run on local storage never needs it.
_S3_ERRORS: tuple[type[BaseException], ...] = (OSError,)


def _import_boto() -> None:
    global _S3_ERRORS
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bce

    _S3_ERRORS = (bce.BotoCoreError, bce.ClientError, S3UploadFailedError, OSError)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _safe_endpoint(url: str) -> str:
    """The endpoint without any user:password an admin may have pasted into it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
