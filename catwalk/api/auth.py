"""Admin authentication of the HTTP API (NFR-003): one bearer token from the environment.

The token is compared with ``hmac.compare_digest`` so the time a wrong guess takes does not
tell how much of it was right. Refusals carry ``WWW-Authenticate: Bearer`` (RFC 6750).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBearer

from catwalk.config import Settings
from catwalk.errors import ConfigError

MIN_TOKEN_LENGTH = 16

# Declares the scheme in the OpenAPI document (so /docs offers an "Authorize" button);
# the check itself is ours, so every refusal is a 401 with the same body and header.
bearer_scheme = HTTPBearer(auto_error=False, description="CATWALK_API_TOKEN")


def resolve_token(settings: Settings, *, allow_generated: bool = False) -> tuple[str, bool]:
    """The token the API accepts, and whether it was generated for this process only.

    Without ``CATWALK_API_TOKEN`` the API refuses to start, except in embedded mode (no
    ``DATABASE_URL``) when the caller allows a one-off token, shown once on the terminal.
    """
    if settings.api_token is not None:
        token = settings.api_token.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"CATWALK_API_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        weak = token_weakness(token)
        if weak:
            raise ConfigError(
                f"CATWALK_API_TOKEN is too weak ({weak}): use a random string "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return token, False
    if allow_generated and settings.database_url is None:
        return secrets.token_urlsafe(32), True
    raise ConfigError(
        "CATWALK_API_TOKEN is not set: the HTTP API never runs without authentication; "
        "set it to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )


MIN_DISTINCT_CHARACTERS = 8


def token_weakness(token: str) -> str | None:
    """Why a token has no real entropy, or None: whitespace, or too few distinct characters.

    Sixteen spaces, "aaaaaaaaaaaaaaaa" or "abababababababab" pass a length check and
    fall to the first guess; a random token of 16+ characters has far more than 8 distinct.
    """
    if any(c.isspace() for c in token):
        return "it contains whitespace"
    if len(set(token)) < MIN_DISTINCT_CHARACTERS:
        return f"fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    return None


def unauthorized(reason: str) -> HTTPException:
    challenge = 'Bearer realm="catwalk"'
    if reason != "missing":
        challenge += ', error="invalid_token"'
    detail = (
        "authentication required: send Authorization: Bearer <CATWALK_API_TOKEN>"
        if reason == "missing"
        else "invalid bearer token"
    )
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": challenge},
    )


def check_request(request: Request) -> HTTPException | None:
    """The refusal for this request, or None when it carries the right token."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return unauthorized("missing")
    expected: str = request.app.state.api_token
    if not hmac.compare_digest(credentials.encode(), expected.encode()):
        return unauthorized("invalid")
    return None
