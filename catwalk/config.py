"""catwalk's one settings object, read from the environment.

Owns every knob a deployment can turn. Nothing else in the code base reads ``os.environ``
(Prefect's own ``PREFECT_*`` settings stay Prefect's). The defaults are the *embedded mode*:
SQLite, local files and offline providers, all under one folder (``CATWALK_HOME``), so a new
user runs catwalk with nothing set up and can see, move or delete everything in one place.

Tests build ``Settings(...)`` directly; code reads ``get_settings()``.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catwalk.domain import ReviewMode

ImageProviderName = Literal["offline", "nano-banana"]
VideoProviderName = Literal["offline", "pika"]
StorageBackendName = Literal["local", "s3"]
LauncherName = Literal["local", "deployment"]
KeyframeCheckMode = Literal["off", "warn", "enforce"]
KeyframeJudgeName = Literal["offline", "gemini"]

_PLACEHOLDERS = {"changethis", "change-me", "changeme", "your-key-here", "xxx"}


class Settings(BaseSettings):
    """Everything configurable, with embedded-mode defaults."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    # Where embedded mode keeps its database, media, logs and Prefect home.
    catwalk_home: Path = Field(default=Path(".catwalk"), alias="CATWALK_HOME")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")

    # Providers: one setting each picks the implementation (clients/factory.py).
    image_provider: ImageProviderName = Field(default="offline", alias="IMAGE_PROVIDER")
    video_provider: VideoProviderName = Field(default="offline", alias="VIDEO_PROVIDER")

    nano_banana_api_key: SecretStr | None = Field(default=None, alias="NANO_BANANA_API_KEY")
    nano_banana_api_url: str = Field(
        default="https://generativelanguage.googleapis.com", alias="NANO_BANANA_API_URL"
    )
    nano_banana_model: str = Field(default="gemini-2.5-flash-image", alias="NANO_BANANA_MODEL")
    image_aspect_ratio: str = Field(default="9:16", alias="IMAGE_ASPECT_RATIO")
    image_size: str = Field(default="1K", alias="IMAGE_SIZE")

    pika_labs_api_key: SecretStr | None = Field(default=None, alias="PIKA_LABS_API_KEY")
    pika_labs_api_url: str = Field(default="https://queue.fal.run", alias="PIKA_LABS_API_URL")
    pika_endpoint: str = Field(default="fal-ai/pika/v2.2/pikaframes", alias="PIKA_ENDPOINT")
    video_duration_seconds: int = Field(default=5, ge=1, le=25, alias="VIDEO_DURATION_SECONDS")
    video_resolution: Literal["720p", "1080p"] = Field(default="720p", alias="VIDEO_RESOLUTION")
    provider_poll_interval_seconds: float = Field(
        default=2.0, ge=0.0, alias="PROVIDER_POLL_INTERVAL_SECONDS"
    )
    provider_http_timeout_seconds: float = Field(
        default=60.0, gt=0, alias="PROVIDER_HTTP_TIMEOUT_SECONDS"
    )
    # Width of the offline renderer's frames; height follows 9:16. Tests shrink it for speed.
    offline_frame_width: int = Field(default=720, ge=64, alias="OFFLINE_FRAME_WIDTH")
    # Simulated provider latency of the offline providers (benchmarks, demos of queueing).
    offline_image_latency_seconds: float = Field(
        default=0.0, ge=0, alias="OFFLINE_IMAGE_LATENCY_SECONDS"
    )
    offline_video_latency_seconds: float = Field(
        default=0.0, ge=0, alias="OFFLINE_VIDEO_LATENCY_SECONDS"
    )
    # Fault injection for the offline providers: "images", "video", "publish" (comma list),
    # each optionally ":transient" (default permanent). Used by tests and the fault benchmark.
    offline_fail_steps: str = Field(default="", alias="OFFLINE_FAIL_STEPS")

    # The keyframe check between the keyframes and the video (tasks/quality.py). Unset mode:
    # "enforce" with a real provider, "warn" offline; unset judge: "gemini" with Nano Banana
    # (same base URL and key), else "offline".
    keyframe_check: KeyframeCheckMode | None = Field(default=None, alias="KEYFRAME_CHECK")
    keyframe_check_retries: int = Field(default=2, ge=0, le=5, alias="KEYFRAME_CHECK_RETRIES")
    keyframe_judge: KeyframeJudgeName | None = Field(default=None, alias="KEYFRAME_JUDGE")
    keyframe_judge_model: str = Field(default="gemini-2.5-flash", alias="KEYFRAME_JUDGE_MODEL")

    # Review points (catwalk/review.py): where a job waits for an admin's decision unless
    # the job says otherwise, and how long it may wait before it is cancelled.
    review: ReviewMode = Field(default="none", alias="REVIEW")
    review_expires_hours: float = Field(default=72.0, gt=0, alias="REVIEW_EXPIRES_HOURS")

    # Storage.
    storage_backend: StorageBackendName = Field(default="local", alias="STORAGE_BACKEND")
    s3_bucket: str | None = Field(default=None, alias="S3_BUCKET")
    s3_region: str = Field(default="us-east-1", alias="S3_REGION")
    s3_access_key_id: SecretStr | None = Field(default=None, alias="S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(default=None, alias="S3_SECRET_ACCESS_KEY")
    s3_endpoint_url: str | None = Field(default=None, alias="S3_ENDPOINT_URL")
    s3_public_base_url: str | None = Field(default=None, alias="S3_PUBLIC_BASE_URL")
    s3_multipart_threshold_bytes: int = Field(
        default=8 * 1024 * 1024, ge=5 * 1024 * 1024, alias="S3_MULTIPART_THRESHOLD_BYTES"
    )
    signed_urls: bool = Field(default=False, alias="SIGNED_URLS")
    signed_url_ttl_seconds: int = Field(
        default=3600, ge=1, le=7 * 24 * 3600, alias="SIGNED_URL_TTL_SECONDS"
    )

    # Cost control.
    daily_generation_limit: int = Field(default=100, ge=0, alias="DAILY_GENERATION_LIMIT")
    daily_budget: Decimal | None = Field(default=None, ge=0, alias="DAILY_BUDGET")
    cost_alert_threshold: Decimal = Field(default=Decimal(1000), ge=0, alias="COST_ALERT_THRESHOLD")
    monthly_cost_alert_threshold: Decimal | None = Field(
        default=None, ge=0, alias="MONTHLY_COST_ALERT_THRESHOLD"
    )
    alert_webhook_url: SecretStr | None = Field(default=None, alias="ALERT_WEBHOOK_URL")
    # Completion webhooks for the shop's systems (catwalk/clients/webhooks.py).
    webhook_url: SecretStr | None = Field(default=None, alias="WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(default=None, alias="WEBHOOK_SECRET")
    webhook_attempts: int = Field(default=4, ge=1, le=10, alias="WEBHOOK_ATTEMPTS")
    # The address other systems reach the HTTP API at (https://catwalk.shop.example): with
    # local storage, webhooks (sent by the flow, which never sees a request) build their
    # /media URLs from it, and the API prefers it to the request's own host (a proxy).
    api_public_url: str | None = Field(default=None, alias="API_PUBLIC_URL")
    limits_timezone: str = Field(default="UTC", alias="LIMITS_TIMEZONE")
    prices_file: Path | None = Field(default=None, alias="CATWALK_PRICES_FILE")

    # Outside input (README "Security"). Photo URLs may not reach private, loopback or
    # link-local addresses unless the shop serves its photos from its own network.
    allow_private_media_hosts: bool = Field(default=False, alias="ALLOW_PRIVATE_MEDIA_HOSTS")
    # Comma list of folders local photo paths must be inside (default: the current
    # directory and CATWALK_HOME).
    media_import_roots: str = Field(default="", alias="MEDIA_IMPORT_ROOTS")
    # Checked from the image header before any pixel is decoded (40 MP).
    max_image_pixels: int = Field(default=40_000_000, ge=1024, alias="MAX_IMAGE_PIXELS")
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024, alias="API_MAX_BODY_BYTES")
    # `catwalk api`'s processes (0: one per CPU): a process runs Python on one CPU at a time
    # (the GIL), so only a process per CPU uses them all (bench/README.md, `bench/api.py`).
    api_workers: int = Field(default=0, ge=0, alias="API_WORKERS")
    # Threads running handlers at once in each process (anyio's default is 40). A request
    # holds the GIL for most of its few ms, so many threads mostly add switching. Measured
    # with 50 clients on this project's loaded 2-CPU machine: on SQLite 6 threads gave POST
    # p95 0.84-1.2 s and p99 1.3-1.9 s against 0.91-2.5 s and 2.7-3.4 s with 40; on
    # PostgreSQL 8 and 40 were within noise of each other. A few more than the CPUs leaves
    # room for threads waiting on the database, and stays inside the PostgreSQL pool (10).
    api_threads: int = Field(default=8, ge=1, alias="API_THREADS")

    # Orchestration.
    launcher: LauncherName = Field(default="local", alias="CATWALK_LAUNCHER")
    deployment_name: str = Field(
        default="generate-product-video/default", alias="CATWALK_DEPLOYMENT"
    )
    max_concurrent_jobs: int = Field(default=10, ge=1, alias="MAX_CONCURRENT_JOBS")
    # Embedded mode: job processes at once; a burst queues behind them (catwalk/local_queue.py).
    local_job_processes: int = Field(default=4, ge=1, le=64, alias="LOCAL_JOB_PROCESSES")
    image_provider_concurrency: int = Field(default=10, ge=1, alias="IMAGE_PROVIDER_CONCURRENCY")
    video_provider_concurrency: int = Field(default=10, ge=1, alias="VIDEO_PROVIDER_CONCURRENCY")
    job_timeout_seconds: int = Field(default=600, ge=10, alias="JOB_TIMEOUT_SECONDS")
    # Overall cap on a job resumed after a crash (default 3 x JOB_TIMEOUT_SECONDS): each run
    # gets JOB_TIMEOUT_SECONDS of work, the job as a whole never more than this.
    job_max_lifetime_seconds: int | None = Field(
        default=None, ge=10, alias="JOB_MAX_LIFETIME_SECONDS"
    )
    task_retries: int = Field(default=3, ge=0, le=10, alias="TASK_RETRIES")
    # First retry delay; later ones grow exponentially (with jitter). 0 under test.
    retry_delay_seconds: float = Field(default=5.0, ge=0, alias="RETRY_DELAY_SECONDS")
    # How long a step waits out a database outage (connection refused/reset) before failing.
    db_outage_seconds: float = Field(default=120.0, ge=0, alias="DB_OUTAGE_SECONDS")

    # Admin access.
    admin_password: SecretStr | None = Field(default=None, alias="CATWALK_ADMIN_PASSWORD")
    admin_password_hash: str | None = Field(default=None, alias="CATWALK_ADMIN_PASSWORD_HASH")
    # How long a dashboard sign-in lasts (its cookie and the session behind it).
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 90, alias="DASHBOARD_SESSION_HOURS"
    )
    # Signs the dashboard's session cookie; unset, a key made once in CATWALK_HOME. Set it
    # when several dashboards with different homes must accept each other's cookies.
    dashboard_session_secret: SecretStr | None = Field(
        default=None, alias="DASHBOARD_SESSION_SECRET"
    )
    # With OIDC sign-in (Streamlit's st.login), only these e-mail addresses are admins.
    admin_emails: str = Field(default="", alias="CATWALK_ADMIN_EMAILS")
    api_token: SecretStr | None = Field(default=None, alias="CATWALK_API_TOKEN")
    prefect_ui_url: str | None = Field(default=None, alias="CATWALK_PREFECT_UI_URL")

    @field_validator("api_public_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("API_PUBLIC_URL must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("catwalk_home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        for name in (
            "nano_banana_api_key",
            "pika_labs_api_key",
            "api_token",
            "admin_password",
            "dashboard_session_secret",
        ):
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value().strip().lower() in _PLACEHOLDERS:
                raise ValueError(f"{name.upper()} is a placeholder; set a real value or unset it")
        return self

    # Derived locations: everything embedded lives under catwalk_home.
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the plain forms people paste; we always talk psycopg 3.
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{self.catwalk_home / 'catwalk.db'}"

    @property
    def media_dir(self) -> Path:
        return self.catwalk_home / "media"

    @property
    def logs_dir(self) -> Path:
        return self.catwalk_home / "logs"

    @property
    def work_dir(self) -> Path:
        """Scratch space for downloads and renders before they reach storage."""
        return self.catwalk_home / "work"

    @property
    def prefect_home(self) -> Path:
        return self.catwalk_home / "prefect"

    @property
    def effective_keyframe_check(self) -> KeyframeCheckMode:
        if self.keyframe_check is not None:
            return self.keyframe_check
        real = self.image_provider != "offline" or self.video_provider != "offline"
        return "enforce" if real else "warn"

    @property
    def effective_keyframe_judge(self) -> KeyframeJudgeName:
        if self.keyframe_judge is not None:
            return self.keyframe_judge
        return "gemini" if self.image_provider == "nano-banana" else "offline"

    @property
    def webhooks_enabled(self) -> bool:
        """Completion events are recorded and sent only with both a URL and a secret."""
        return self.webhook_url is not None and self.webhook_secret is not None

    def max_lifetime_seconds(self) -> int:
        return self.job_max_lifetime_seconds or 3 * self.job_timeout_seconds

    def retry_delays(self) -> list[float]:
        """Exponential backoff for ``task_retries`` retries, starting at ``retry_delay_seconds``."""
        return [self.retry_delay_seconds * (3**i) for i in range(self.task_retries)]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
