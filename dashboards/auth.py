"""Who may use the dashboard: password checks, the generated embedded-mode password, and the
sign-in throttle. Plain functions (no Streamlit), so the CLI and tests use them directly.

Password hashes use the standard library's scrypt in one documented, self-describing format::

    scrypt$<n>$<r>$<p>$<salt, urlsafe base64>$<key, urlsafe base64>

(``catwalk hash-password`` prints one for ``CATWALK_ADMIN_PASSWORD_HASH``.) Wrong passwords are
slowed down twice: per browser session (kept in the session) and globally, in the database,
so every dashboard process and every new session share one exponential back-off.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catwalk.db import session_scope
from catwalk.db.base import utcnow
from catwalk.db.models import SigninThrottle
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from catwalk.config import Settings
from catwalk.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES = 2**14, 8, 1, 32
GENERATED_HASH_FILE = "admin-password.scrypt"
# Wrong passwords any sessions may make before the global back-off starts, and its ceiling.
GLOBAL_FREE_FAILURES = 5
GLOBAL_FIRST_LOCK_SECONDS = 30
GLOBAL_MAX_LOCK_SECONDS = 15 * 60
SESSION_MAX_LOCK_SECONDS = 5 * 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The password's scrypt hash in catwalk's format (a fresh random salt by default)."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_hash_format(encoded: str) -> None:
    """ConfigError (one line) unless ``encoded`` is a well-formed catwalk scrypt hash.

    Run at start-up, so a typo in CATWALK_ADMIN_PASSWORD_HASH stops ``catwalk dashboard``
    with one line instead of showing a traceback on the sign-in page. The cost parameters are
    bounded too: a hash saying n=2**30 would make every sign-in attempt take gigabytes.
    """
    try:
        scheme, n, r, p, salt, key = encoded.strip().split("$")
        n_, r_, p_ = int(n), int(r), int(p)
        ok = (
            scheme == "scrypt"
            and 2**10 <= n_ <= 2**20
            and n_ & (n_ - 1) == 0
            and 1 <= r_ <= 32
            and 1 <= p_ <= 16
            and n_ * r_ * 128 <= 256 * 1024 * 1024
            and len(_unb64(salt)) >= 8
            and len(_unb64(key)) >= 16
        )
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            "CATWALK_ADMIN_PASSWORD_HASH is not a catwalk scrypt hash "
            "(make one with `catwalk hash-password`)"
        )


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; ConfigError when the hash is malformed."""
    check_hash_format(encoded)
    try:
        _scheme, n, r, p, salt, key = encoded.strip().split("$")
        expected = _unb64(key)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "CATWALK_ADMIN_PASSWORD_HASH is not a catwalk scrypt hash "
            "(make one with `catwalk hash-password`)"
        ) from exc
    return hmac.compare_digest(actual, expected)


def generated_hash_path(settings: Settings) -> Path:
    return settings.catwalk_home / GENERATED_HASH_FILE


def is_embedded(settings: Settings) -> bool:
    """Embedded mode: the database is catwalk's own SQLite file (no DATABASE_URL)."""
    return settings.database_url is None


def password_configured(settings: Settings) -> bool:
    return bool(
        settings.admin_password_hash
        or settings.admin_password
        or generated_hash_path(settings).is_file()
    )


def _write_hash(path: Path, password: str, *, replace: bool) -> bool:
    """Keep ``password``'s hash in ``path`` (mode 600); False when it exists and not ``replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(hash_password(password) + "\n")
    try:
        if replace:
            os.replace(tmp, path)
            return True
        try:
            # link() fails on an existing file: two dashboards starting at once keep the
            # first one's password, and the second prints nothing rather than a dead one.
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def embedded_password(settings: Settings, *, reset: bool = False) -> str | None:
    """The embedded-mode admin password, made once and kept only as a hash in CATWALK_HOME.

    Returns the password when this call made it (the only time it can be shown), None when
    the one made earlier stays. ``reset`` makes a new one, and the old one stops working.
    """
    password = secrets.token_urlsafe(12)
    return password if _write_hash(generated_hash_path(settings), password, replace=reset) else None


def check_password(settings: Settings, candidate: str) -> bool:
    """Does ``candidate`` match the configured (or generated) admin password?"""
    if settings.admin_password_hash:
        return verify_password(candidate, settings.admin_password_hash)
    if settings.admin_password is not None:
        # Compare digests so the comparison takes the same time whatever the lengths.
        given = hashlib.sha256(candidate.encode()).digest()
        wanted = hashlib.sha256(settings.admin_password.get_secret_value().encode()).digest()
        return hmac.compare_digest(given, wanted)
    path = generated_hash_path(settings)
    if path.is_file():
        return verify_password(candidate, path.read_text())
    return False


def admin_emails(settings: Settings) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in settings.admin_emails.split(",") if e.strip())


def _session_lock_seconds(failures: int) -> float:
    return 0.0 if failures <= 0 else float(min(2 ** (failures - 1), SESSION_MAX_LOCK_SECONDS))


def _global_lock_seconds(failures: int) -> float:
    if failures < GLOBAL_FREE_FAILURES:
        return 0.0
    lock = GLOBAL_FIRST_LOCK_SECONDS * 2 ** (failures - GLOBAL_FREE_FAILURES)
    return float(min(lock, GLOBAL_MAX_LOCK_SECONDS))


def _global_wait(settings: Settings) -> float:
    with session_scope(settings) as session:
        row = session.get(SigninThrottle, "global")
        if row is None or row.locked_until is None:
            return 0.0
        return max(0.0, (row.locked_until - utcnow()).total_seconds())


def _increment_global(settings: Settings) -> int:
    with session_scope(settings) as session:
        # One atomic increment, however many dashboards count failures at once.
        failures = session.execute(
            update(SigninThrottle)
            .where(SigninThrottle.scope == "global")
            .values(failures=SigninThrottle.failures + 1, updated_at=utcnow())
            .returning(SigninThrottle.failures)
        ).scalar_one_or_none()
        if failures is not None:
            return int(failures)
    # The row is made by the migration; recreate it if someone emptied the table.
    try:
        with session_scope(settings) as session:
            session.add(SigninThrottle(scope="global", failures=1, updated_at=utcnow()))
        return 1
    except IntegrityError:
        return _increment_global(settings)


def _record_global_failure(settings: Settings) -> None:
    failures = _increment_global(settings)
    lock = _global_lock_seconds(failures)
    if lock:
        with session_scope(settings) as session:
            session.execute(
                update(SigninThrottle)
                .where(SigninThrottle.scope == "global")
                .values(locked_until=utcnow() + dt.timedelta(seconds=lock))
            )


def _reset_global(settings: Settings) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(SigninThrottle)
            .where(SigninThrottle.scope == "global")
            .values(failures=0, locked_until=None, updated_at=utcnow())
        )


@dataclass(frozen=True, slots=True)
class SigninResult:
    ok: bool
    message: str = ""
    retry_after_seconds: float = 0.0


def attempt_signin(
    settings: Settings, candidate: str, state: MutableMapping[str, Any], *, now: float | None = None
) -> SigninResult:
    """Check a password under both throttles; ``state`` is the browser session's state.

    While either throttle is active the password is not even checked: a correct guess made
    during a lock-out must not be told apart from a wrong one.
    """
    now = time.time() if now is None else now
    wait = max(float(state.get("signin_locked_until", 0.0)) - now, _global_wait(settings))
    if wait > 0:
        return SigninResult(
            False, f"Too many failed sign-ins. Try again in {max(1, round(wait))} s.", wait
        )
    if check_password(settings, candidate):
        state["signin_failures"] = 0
        state["signin_locked_until"] = 0.0
        _reset_global(settings)
        return SigninResult(True)
    failures = int(state.get("signin_failures", 0)) + 1
    state["signin_failures"] = failures
    state["signin_locked_until"] = now + _session_lock_seconds(failures)
    _record_global_failure(settings)
    return SigninResult(False, "Wrong password.", _session_lock_seconds(failures))
