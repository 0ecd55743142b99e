"""Checks shared by the storage flow tests: what the database refers to must exist."""

from __future__ import annotations

import json

from catwalk.db import queries, session_scope

from catwalk.clients.base import BlobStore
from catwalk.clients.storage import S3BlobStore


def referenced_keys() -> set[str]:
    """Every storage key a product or a job refers to."""
    keys: set[str] = set()
    with session_scope() as session:
        for product in queries.list_products(session=session):
            keys |= {k for k in (product.video_key, product.poster_key) if k}
        for job in queries.list_jobs(session=session, limit=10_000):
            keys |= {k for k in (job.video_key, job.poster_key) if k}
            keys |= {str(k) for k in job.image_keys.values()}
    return keys


def assert_no_referenced_file_missing(store: BlobStore) -> None:
    missing = sorted(k for k in referenced_keys() if store.head(k) is None)
    assert missing == [], f"the database refers to files that are gone: {missing}"


def open_deletions() -> list[tuple[str, int, str | None]]:
    with session_scope() as session:
        return [
            (d.key, d.attempts, d.last_error) for d in queries.pending_deletions(session=session)
        ]


def public_bucket(store: S3BlobStore) -> None:
    """Let anyone GET objects (what a public R2 bucket or a CDN in front of S3 gives)."""
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


def bucket_keys(store: S3BlobStore) -> set[str]:
    listed = store._client.list_objects_v2(Bucket=store.bucket)
    return {item["Key"] for item in listed.get("Contents", [])}
