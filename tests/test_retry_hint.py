"""The retry policy honours a provider's retry hint (RetryInfo / Retry-After), capped, and
never waits when retry delays are off (tests)."""

from __future__ import annotations

from catwalk.tasks._policy import MAX_RETRY_HINT_SECONDS, wait_out_retry_hint

from catwalk.config import Settings
from catwalk.errors import PermanentProviderError, TransientProviderError


def test_waits_the_hint_then_caps_it() -> None:
    slept: list[float] = []
    on = Settings(RETRY_DELAY_SECONDS="5")
    hinted = TransientProviderError("429", provider="gemini", retry_after_seconds=28.0)
    assert wait_out_retry_hint(hinted, settings=on, sleep=slept.append) == 28.0
    daily = TransientProviderError("429", provider="gemini", retry_after_seconds=86400.0)
    assert wait_out_retry_hint(daily, settings=on, sleep=slept.append) == MAX_RETRY_HINT_SECONDS
    assert slept == [28.0, MAX_RETRY_HINT_SECONDS]


def test_no_wait_without_a_hint_or_with_delays_off() -> None:
    slept: list[float] = []
    plain = TransientProviderError("503", provider="gemini")
    assert (
        wait_out_retry_hint(plain, settings=Settings(RETRY_DELAY_SECONDS="5"), sleep=slept.append)
        == 0
    )
    hinted = TransientProviderError("429", provider="fal", retry_after_seconds=9.0)
    assert (
        wait_out_retry_hint(hinted, settings=Settings(RETRY_DELAY_SECONDS="0"), sleep=slept.append)
        == 0
    )
    refused = PermanentProviderError("safety", provider="gemini")
    assert (
        wait_out_retry_hint(refused, settings=Settings(RETRY_DELAY_SECONDS="5"), sleep=slept.append)
        == 0
    )
    assert slept == []
