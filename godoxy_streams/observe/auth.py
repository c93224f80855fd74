"""The status API's bearer token: which paths need it and how a request proves it.

Public (no token): the page (``/``), its static files (``/static/...``) and ``/healthz``
(container health checks); the page itself asks for the token when an API call is refused.
Everything else (``/api/*``, ``/metrics``, any unknown path) needs ``Authorization: Bearer
<token>``. The comparison is on bytes, in constant time; a header that is missing, of
another scheme or not even text is a 401 like a wrong token, never an error.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

PUBLIC_PATHS = frozenset({"/", "/healthz"})
PUBLIC_PREFIX = "/static/"
SCHEME = b"bearer "


def public(path: str) -> bool:
    """Whether ``path`` is served without the token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def presented(header: str) -> bytes | None:
    """The token an ``Authorization`` header presents (its raw bytes), or None when the
    header is not ``Bearer <token>``."""
    try:
        raw = header.encode("utf-8", "surrogateescape")  # the bytes aiohttp decoded
    except UnicodeEncodeError:
        return None
    if raw[: len(SCHEME)].lower() != SCHEME:
        return None
    token = raw[len(SCHEME) :].strip(b" \t")
    return token or None


def token_matches(header: str, token: bytes) -> bool:
    """Whether the ``Authorization`` header carries ``token``."""
    given = presented(header)
    return given is not None and hmac.compare_digest(given, token)


def require_token(token: str) -> Any:
    """The middleware that turns away requests for non-public paths without ``token``."""
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if not public(request.path):
            if not token_matches(request.headers.get("Authorization", ""), expected):
                return web.json_response(
                    {"error": "a bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return check
