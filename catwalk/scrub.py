"""The one place secrets are taken out of text.

Every message that leaves the process goes through ``scrub``: exception text
(``CatwalkError.__str__``, hence Prefect state messages and API/CLI errors), job errors
and events (ORM validators in ``db/models.py``) and every log record (a record factory
installed with ``install_log_scrubbing``, which also covers Prefect's API log handler).

Secrets are the ones in the settings plus any a client registers (tests build clients with
keys that are not in the environment). Scrubbing happens on the whole text *before* it is
cut to length: cutting first can leave a prefix of a key that no longer matches.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
# Shorter strings are not secrets worth masking (and masking "a" would wreck every text).
_MIN_SECRET = 6
_registered: set[str] = set()
_lock = threading.Lock()
_SETTINGS_SECRETS = (
    "nano_banana_api_key",
    "pika_labs_api_key",
    "api_token",
    "admin_password",
    "s3_secret_access_key",
    "alert_webhook_url",
)


def register_secret(*secrets: str | None) -> None:
    """Also scrub these from now on (a client's key given directly, not via settings)."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET:
                _registered.add(secret)


def _settings_secrets() -> list[str]:
    try:
        from catwalk.config import get_settings

        settings = get_settings()
    except (ValueError, ImportError):  # bad settings must not stop an error being reported
        return []
    found: list[str] = []
    for name in _SETTINGS_SECRETS:
        value = getattr(settings, name, None)
        if value is None:
            continue
        text = value.get_secret_value()
        # fal keys are "id:secret": the secret half alone is as sensitive as the whole.
        found.extend((text, text.partition(":")[2]))
    return found


def secrets() -> list[str]:
    """Known secrets, longest first (so a key is masked whole, not around a shorter one)."""
    with _lock:
        known = set(_registered)
    known.update(s for s in _settings_secrets() if len(s) >= _MIN_SECRET)
    return sorted(known, key=len, reverse=True)


def scrub(text: Any) -> Any:
    """``text`` with every known secret replaced by ``***``; non-strings pass unchanged."""
    if not isinstance(text, str) or not text:
        return text
    for secret in secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_and_cut(text: object, limit: int) -> str:
    """One line of at most ``limit`` characters, scrubbed first."""
    line = " ".join(scrub(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_installed = False


def install_log_scrubbing() -> None:
    """Scrub every log record when it is made, whoever logs it and wherever it goes."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: logging reports it
            return record
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks quote exception text: format now, scrubbed, and keep that.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


# An absolute path (or file:// URI) not inside a URL: a "/" that no host, word or dot precedes.
_FILE_URI = re.compile(r"file://(?P<path>/[^\s'\"]*)")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~\-])(?:~)?/[^\s/'\"(),;]+(?:/[^\s/'\"(),;]+)*/?")


def _last_part(match: re.Match[str]) -> str:
    parts = [p for p in match.group(0).removeprefix("file://").split("/") if p]
    return parts[-1] if parts else "…"


def without_paths(text: str) -> str:
    """``text`` with every absolute server path shown as its last part (the file's name).

    For what leaves through the HTTP API: a caller learns which photo or file was wrong,
    never where the server keeps it (its home, media folder, Python install).
    """
    return _ABSOLUTE_PATH.sub(_last_part, _FILE_URI.sub(_last_part, text))
