"""Configuration checked at the front door, before a job is recorded.

A submission that can never succeed (a provider without its key, S3 storage without a
bucket) is refused at once with one line, instead of recording the job and failing it (with
an alert) a minute later. Unknown provider names are refused earlier still, by the settings.

Only what the settings say is checked, never the network: a submission answers within a
second, and a bucket that exists but breaks later must still fail its job clearly (and keep
the product's video), which tests/test_storage_flow.py holds the job path to.
"""

from __future__ import annotations

from catwalk.clients import factory
from catwalk.config import Settings


def check_submission_config(settings: Settings) -> None:
    """Raise ``ConfigError`` if a job submitted now could not run with these settings."""
    # Each factory raises ConfigError for a missing key or bucket; building is cheap (no I/O).
    factory.image_generator(settings)
    factory.video_generator(settings)
    factory.blob_store(settings)
