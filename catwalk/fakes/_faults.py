"""Scripted misbehaviour shared by the fake servers: a queue of faults, consumed in order.

A fault says what to do (``kind``), where (``on``: which endpoint, or ``any``) and how many
times (``count``). Tests and ``catwalk fakes`` add faults through the constructor or the
control endpoint (``POST /_fake/faults``).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Fault:
    kind: str
    on: str = "any"
    count: int = 1
    seconds: float = 0.0  # latency
    retry_delay: str = "7s"  # Gemini RetryInfo.retryDelay
    retry_after: str | None = None  # HTTP Retry-After header
    reason: str = ""  # block / finish reason, error type
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "kind" not in raw:
            raise ValueError("a fault needs a kind")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultQueue:
    """Thread-safe: the fakes run their handlers in a thread pool."""

    def __init__(self, faults: list[Fault] | None = None, *, kinds: frozenset[str]) -> None:
        self._kinds = kinds
        self._lock = threading.Lock()
        self._items: list[Fault] = []
        for fault in faults or []:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        if fault.kind not in self._kinds:
            raise ValueError(
                f"unknown fault kind {fault.kind!r}; one of {', '.join(sorted(self._kinds))}"
            )
        if fault.count < 1:
            raise ValueError("a fault's count must be at least 1")
        with self._lock:
            self._items.append(fault)

    def take(self, on: str) -> Fault | None:
        """The first pending fault for endpoint ``on`` (or any endpoint), used once."""
        with self._lock:
            for i, fault in enumerate(self._items):
                if fault.on in ("any", on):
                    fault.count -= 1
                    if fault.count <= 0:
                        del self._items[i]
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._items]
