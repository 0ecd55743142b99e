"""The one rule for ids and names that come from outside (CLI, catalog files, API).

An id is 1 to 64 characters of ASCII letters, digits, ``.``, ``_`` and ``-``, starting with
a letter or a digit. Nothing else reaches the database or a storage key: no NUL (which
PostgreSQL refuses with a traceback), no lone surrogate (which SQLite cannot encode), no
markup, no path separator.

A name is any text of 1 to 200 characters once control characters (NUL included) are
taken out and runs of whitespace are made one space.
"""

from __future__ import annotations

import re
import unicodedata

from catwalk.errors import InputError

MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 200
ID_RULE = "1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def check_id(value: object, *, what: str = "product id") -> str:
    """``value`` when it follows the id rule; otherwise one clear InputError."""
    if not is_valid_id(value):
        shown = ascii(value)[:80]
        raise InputError(f"invalid {what} {shown}: an id is {ID_RULE}")
    return str(value)


def clean_name(value: object) -> str:
    """A product name without control characters, or one clear InputError."""
    if not isinstance(value, str):
        raise InputError(f"a product name must be text, not {type(value).__name__}")
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in value
        # Cc: controls (NUL, escape...); Cs: lone surrogates; Cf: bidi overrides, zero-width.
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cs", "Cf")
    )
    name = " ".join(kept.split())
    if not name:
        raise InputError("a product name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(
            f"a product name is at most {MAX_NAME_LENGTH} characters ({len(name)} given)"
        )
    return name


def slug(name: str) -> str:
    """An id made from a name; one clear error when nothing of the name is usable."""
    made = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_ID_LENGTH].strip("-")
    if not made:
        raise InputError(f"cannot make an id from the name {ascii(name)[:80]}: give one with --id")
    return made


MAX_REF_LENGTH = 2048


def check_image_ref(value: object) -> str:
    """A photo path or URL as text, without control characters (NUL breaks PostgreSQL)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("a photo is a non-empty path or URL")
    if len(value) > MAX_REF_LENGTH or any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InputError(
            f"photo reference {ascii(value)[:80]} is too long or holds control characters"
        )
    return value
