"""S3BlobStore against a real S3 API over HTTP (moto in server mode, its own process)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import httpx
import pytest

from catwalk.clients.keys import object_key
from catwalk.clients.storage import CACHE_CONTROL, S3BlobStore
from catwalk.config import Settings
from catwalk.errors import ConfigError, StorageError, TransientStorageError
from tests.moto_server import ACCESS_KEY, BUCKET, SECRET_KEY, MotoServer, free_port, make_store

MiB = 1024 * 1024
JOB = "0123456789abcdef0123456789abcdef"


def _public_bucket(store: S3BlobStore) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{store.bucket}/*",
            }
        ],
    }
    store._client.put_bucket_policy(Bucket=store.bucket, Policy=json.dumps(policy))


def _file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


# Uploads ------------------------------------------------------------------------------------


def test_a_video_upload_sets_type_and_cache_headers_and_is_verified(s3_store, tmp_path) -> None:
    source = _file(tmp_path, "v.mp4", 200_000)
    key = object_key("linen-shirt", JOB, "video")
    stored = s3_store.put_file(key, source, "video/mp4")

    assert stored.key == key and stored.size == 200_000 and stored.content_type == "video/mp4"
    # Single-part upload: the ETag is the MD5 of the bytes, and that is what was checked.
    assert stored.checksum == hashlib.md5(source.read_bytes()).hexdigest()
    head = s3_store._client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "video/mp4"
    assert head["CacheControl"] == CACHE_CONTROL
    assert s3_store.get_bytes(key) == source.read_bytes()

    _public_bucket(s3_store)
    response = httpx.get(s3_store.url(key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["cache-control"] == CACHE_CONTROL
    assert response.content == source.read_bytes()


@pytest.mark.parametrize(
    ("variant", "mime"), [("poster", "image/jpeg"), ("keyframe-start", "image/png")]
)
def test_image_bytes_keep_their_content_type(s3_store, variant: str, mime: str) -> None:
    key = object_key("linen-shirt", JOB, variant)
    stored = s3_store.put_bytes(key, b"\x89PNG fake but opaque bytes", mime)
    head = s3_store.head(key)
    assert head is not None
    assert (head.size, head.content_type, head.checksum) == (stored.size, mime, stored.checksum)


def test_a_file_over_the_part_size_goes_up_in_parts_and_is_verified(s3_store, tmp_path) -> None:
    part = 5 * MiB  # the store's threshold and part size (S3's minimum part size)
    source = _file(tmp_path, "big.mp4", part + MiB + 123)
    stored = s3_store.put_file("products/x/big.mp4", source, "video/mp4")

    data = source.read_bytes()
    parts = [data[:part], data[part:]]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-2"
    # "-2": S3 assembled it from two parts, so the multipart path was taken.
    assert stored.checksum == expected
    head = s3_store._client.head_object(Bucket=BUCKET, Key="products/x/big.mp4")
    assert head["ETag"].strip('"') == expected
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/mp4"
    assert s3_store.get_bytes("products/x/big.mp4") == data


def test_a_file_under_the_part_size_goes_up_in_one_piece(s3_store, tmp_path) -> None:
    source = _file(tmp_path, "small.mp4", 5 * MiB - 1)
    stored = s3_store.put_file("products/x/small.mp4", source, "video/mp4")
    assert stored.checksum == hashlib.md5(source.read_bytes()).hexdigest()
    assert "-" not in stored.checksum


class _Tampering:
    """Stands in for the S3Bucket block and stores other bytes than it was given,
    as a broken proxy or a concurrent writer would. The check that follows is real."""

    def __init__(self, store: S3BlobStore, mutate) -> None:
        self.store, self.mutate = store, mutate

    def upload_from_path(self, from_path, to_path, **kwargs) -> str:
        data = self.mutate(Path(from_path).read_bytes())
        extra = kwargs["ExtraArgs"]
        self.store._client.put_object(Bucket=self.store.bucket, Key=to_path, Body=data, **extra)
        return to_path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-10], r"is 99990 bytes in bucket 'catwalk-media', expected 100000"),
        (lambda b: bytes([b[0] ^ 1]) + b[1:], r"does not match its source \(ETag"),
    ],
    ids=["truncated", "same-size-corrupted"],
)
def test_an_upload_that_stored_other_bytes_is_refused(s3_store, tmp_path, mutate, message) -> None:
    source = _file(tmp_path, "v.mp4", 100_000)
    s3_store._bucket_block = _Tampering(s3_store, mutate)
    with pytest.raises(StorageError, match=message) as caught:
        s3_store.put_file("products/x/v.mp4", source, "video/mp4")
    assert not isinstance(caught.value, TransientStorageError)


def test_head_and_delete(s3_store) -> None:
    assert s3_store.head("products/x/missing.mp4") is None
    s3_store.put_bytes("products/x/a.jpg", b"jpeg", "image/jpeg")
    assert s3_store.head("products/x/a.jpg") is not None
    s3_store.delete("products/x/a.jpg")
    assert s3_store.head("products/x/a.jpg") is None
    listed = s3_store._client.list_objects_v2(Bucket=BUCKET)
    assert listed["KeyCount"] == 0
    # Deleting what is already gone is not an error (a retried delete must succeed).
    s3_store.delete("products/x/a.jpg")


def test_reading_a_missing_object_says_so(s3_store) -> None:
    with pytest.raises(StorageError, match="stored file missing: products/x/none.mp4"):
        s3_store.get_bytes("products/x/none.mp4")


def test_unicode_product_keys_round_trip_over_http(s3_store) -> None:
    key = object_key("Kleid für Größe M / ../../etc", JOB, "poster")
    s3_store.put_bytes(key, b"poster", "image/jpeg")
    _public_bucket(s3_store)
    assert httpx.get(s3_store.url(key)).content == b"poster"


# URLs ---------------------------------------------------------------------------------------


def _sigv4_signature(url: str, secret: str) -> str:
    """An independent SigV4 query-string signature (AWS's published algorithm), because moto
    does not check signatures: this proves the URL is signed with our secret and that the
    expiry is part of what is signed."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.pop("X-Amz-Signature")

    def enc(value: str) -> str:
        return quote(value, safe="-_.~")

    canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret}".encode()
    for piece in scope.split("/"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("ttl", [60, 3600, 7 * 24 * 3600])
def test_signed_urls_carry_the_configured_lifetime_and_a_valid_signature(
    moto_s3, s3_store, ttl
) -> None:
    key = object_key("Kleid für Größe M", JOB, "video")
    s3_store.put_bytes(key, b"mp4 bytes", "video/mp4")
    signing = make_store(moto_s3.endpoint, signed_urls=True, signed_url_ttl_seconds=ttl)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    url = signing.url(key)

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == moto_s3.endpoint
    assert parts.path == f"/{BUCKET}/{quote(key)}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == str(ttl)
    signed_at = dt.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before - dt.timedelta(seconds=1) <= signed_at <= before + dt.timedelta(seconds=60)
    assert query["X-Amz-Credential"] == f"{ACCESS_KEY}/{signed_at:%Y%m%d}/us-east-1/s3/aws4_request"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Signature"] == _sigv4_signature(url, SECRET_KEY)
    assert query["X-Amz-Signature"] != _sigv4_signature(url, SECRET_KEY + "x")
    assert SECRET_KEY not in url

    # The bucket is private: the lasting URL is refused, the signed one is served.
    assert httpx.get(signing.public_url(key)).status_code == 403
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"mp4 bytes"
    assert response.headers["content-type"] == "video/mp4"


def test_unsigned_urls_are_the_public_base_then_the_endpoint_then_aws(moto_s3) -> None:
    key = "products/kleid-fur-grosse-m-0123456789abcdef/" + JOB + "/video.mp4"
    cdn = make_store(moto_s3.endpoint, public_base_url="https://media.example.com/")
    assert cdn.url(key) == f"https://media.example.com/{key}"
    assert make_store(moto_s3.endpoint).url(key) == f"{moto_s3.endpoint}/{BUCKET}/{key}"
    aws = make_store(None, region="eu-west-1")
    assert aws.url(key) == f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/{key}"
    # Signed or not, the lasting address never carries a signature.
    signed = make_store(
        moto_s3.endpoint, signed_urls=True, public_base_url="https://media.example.com"
    )
    assert signed.public_url(key) == f"https://media.example.com/{key}"
    assert "X-Amz-Signature" in signed.url(key)


# Errors -------------------------------------------------------------------------------------


def _no_secret_anywhere(exc: BaseException) -> None:
    seen: BaseException | None = exc
    while seen is not None:
        assert SECRET_KEY not in str(seen) and SECRET_KEY not in repr(seen)
        seen = seen.__cause__ or seen.__context__


def _every_operation(store: S3BlobStore, tmp_path: Path) -> list[tuple[str, object]]:
    source = _file(tmp_path, "v.mp4", 1000)
    return [
        ("put_file", lambda: store.put_file("products/x/v.mp4", source, "video/mp4")),
        ("put_bytes", lambda: store.put_bytes("products/x/p.jpg", b"jpeg", "image/jpeg")),
        ("get_bytes", lambda: store.get_bytes("products/x/v.mp4")),
        ("head", lambda: store.head("products/x/v.mp4")),
        ("delete", lambda: store.delete("products/x/v.mp4")),
    ]


def test_a_missing_bucket_is_named_in_every_operation(moto_s3, s3_store, tmp_path) -> None:
    store = make_store(moto_s3.endpoint, bucket="no-such-bucket")
    for name, operation in _every_operation(store, tmp_path):
        with pytest.raises(StorageError) as caught:
            operation()  # type: ignore[operator]
        message = str(caught.value)
        assert message == (
            f"S3 bucket 'no-such-bucket' at {moto_s3.endpoint} does not exist "
            "(create it, or fix S3_BUCKET)"
        ), name
        assert not isinstance(caught.value, TransientStorageError), name
        _no_secret_anywhere(caught.value)


def test_rejected_credentials_are_named(moto_s3_with_auth: MotoServer, tmp_path) -> None:
    """This moto server checks access keys (against its empty IAM), so ours is unknown."""
    store = make_store(moto_s3_with_auth.endpoint)
    for name, operation in _every_operation(store, tmp_path):
        with pytest.raises(StorageError) as caught:
            operation()  # type: ignore[operator]
        message = str(caught.value)
        assert message.startswith("S3 ") and "S3_ACCESS_KEY_ID" in message, (name, message)
        if name in ("put_file", "put_bytes", "get_bytes", "delete"):
            # Requests with a body in the answer say exactly why.
            assert "rejected the credentials" in message and "InvalidAccessKeyId" in message, name
        assert not isinstance(caught.value, TransientStorageError), name
        _no_secret_anywhere(caught.value)


def test_an_unreachable_endpoint_is_transient_and_named(tmp_path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = make_store(closed)
    for name, operation in _every_operation(store, tmp_path):
        with pytest.raises(TransientStorageError) as caught:
            operation()  # type: ignore[operator]
        assert str(caught.value).startswith(
            f"cannot reach the storage endpoint {closed} during "
        ), name
        _no_secret_anywhere(caught.value)


def test_an_endpoint_with_a_password_in_it_is_never_echoed(tmp_path) -> None:
    port = free_port()
    store = make_store(f"http://admin:hunter2@127.0.0.1:{port}")
    with pytest.raises(TransientStorageError) as caught:
        store.put_bytes("products/x/p.jpg", b"jpeg", "image/jpeg")
    assert "hunter2" not in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_no_credentials_at_all_is_a_clear_error(moto_s3, s3_store, monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = make_store(moto_s3.endpoint, access_key_id=None, secret_access_key=None)
    with pytest.raises(
        StorageError, match="no S3 credentials found: set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
    ):
        store.put_bytes("products/x/p.jpg", b"jpeg", "image/jpeg")


def test_the_factory_builds_the_s3_store_from_settings(moto_s3) -> None:
    from catwalk.clients import factory

    settings = Settings(
        STORAGE_BACKEND="s3",
        S3_BUCKET=BUCKET,
        S3_REGION="eu-central-1",
        S3_ACCESS_KEY_ID=ACCESS_KEY,
        S3_SECRET_ACCESS_KEY=SECRET_KEY,
        S3_ENDPOINT_URL=moto_s3.endpoint + "/",
        S3_PUBLIC_BASE_URL="https://pub-123.r2.dev",
        S3_MULTIPART_THRESHOLD_BYTES=str(6 * MiB),
        SIGNED_URLS="true",
        SIGNED_URL_TTL_SECONDS="900",
    )
    store = factory.blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.region, store.endpoint_url) == (
        BUCKET,
        "eu-central-1",
        moto_s3.endpoint,
    )
    assert store.part_size == 6 * MiB
    assert "X-Amz-Expires=900" in store.url("products/a/b.mp4")
    assert store.public_url("products/a/b.mp4") == "https://pub-123.r2.dev/products/a/b.mp4"

    with pytest.raises(ConfigError, match="STORAGE_BACKEND=s3 needs S3_BUCKET"):
        factory.blob_store(Settings(STORAGE_BACKEND="s3"))
