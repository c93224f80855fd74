"""The socket filter's opt-in for sleep/wake (``socket-proxy --allow-lifecycle``, and the
agent's): ``POST /containers/{id}/start``, ``stop`` (``t``, ``signal``), ``pause``,
``unpause`` and ``kill`` (``signal``), each optionally behind an API version, with no body
and no other parameter, and only for a container under sleep/wake control: its labels carry
a valid ``<namespace>.idle_timeout``, or a container whose labels do names it in its
``depends_on`` (``<namespace>.depends_on``, else compose's own; by compose service of the same
project or by container name), so dependencies wake and sleep with it.

The target is inspected first, and the call is forwarded to the id the inspect answered (a
name cannot be moved to another container in between). Anything else is refused by the
caller's rules (403), as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from loguru import logger
from yarl import URL

from godoxy_streams.labels.idle import COMPOSE_DEPENDS_ON, parse_depends_on, read_idle

UPSTREAM = "http://docker"
_CALL = re.compile(
    r"(?P<version>/v[0-9]{1,2}\.[0-9]{1,3})?"
    r"/containers/(?P<ref>[A-Za-z0-9][A-Za-z0-9_.-]{0,254})"
    r"/(?P<action>start|stop|pause|unpause|kill)"
)
_SIGNAL = re.compile(r"(?:SIG)?[A-Z][A-Z0-9+]{0,11}|[0-9]{1,2}")
_SECONDS = re.compile(r"-?[0-9]{1,6}")
PARAMS: Mapping[str, Mapping[str, re.Pattern[str]]] = {
    "start": {},
    "stop": {"t": _SECONDS, "signal": _SIGNAL},
    "pause": {},
    "unpause": {},
    "kill": {"signal": _SIGNAL},
}


@dataclass(frozen=True)
class LifecycleCall:
    """One lifecycle request, validated."""

    version: str  # "/v1.41", or "" when the client named none
    ref: str  # the container's id or name as the client gave it
    action: str
    params: tuple[tuple[str, str], ...]


def lifecycle_call(method: str, raw_target: str) -> LifecycleCall | None:
    """The lifecycle call a request line asks for, or None when it is not one (or has a
    parameter that is not allowed)."""
    path, _, query = raw_target.partition("?")
    match = _CALL.fullmatch(path)
    if method != "POST" or match is None:
        return None
    allowed = PARAMS[match.group("action")]
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        return None
    names = [name for name, _ in params]
    if len(set(names)) != len(names):
        return None
    for name, value in params:
        pattern = allowed.get(name)
        if pattern is None or not pattern.fullmatch(value):
            return None
    return LifecycleCall(
        match.group("version") or "", match.group("ref"), match.group("action"), tuple(params)
    )


def _labels(doc: Mapping[str, Any]) -> dict[str, str]:
    labels = doc.get("Labels") if "Labels" in doc else (doc.get("Config") or {}).get("Labels")
    return {str(k): str(v) for k, v in (labels or {}).items()}


def sleeps(labels: Mapping[str, str], namespace: str) -> bool:
    return read_idle(labels, namespace, "").config is not None


def depends_on_it(
    target: Mapping[str, Any], others: list[Mapping[str, Any]], namespace: str
) -> str | None:
    """The name of a container with sleep/wake whose ``depends_on`` names ``target`` (an
    inspect document; ``others`` are list entries), or None."""
    labels = _labels(target)
    project = labels.get("com.docker.compose.project", "")
    service = labels.get("com.docker.compose.service", "").lower()
    name = str(target.get("Name") or "").lstrip("/").lower()
    for other in others:
        theirs = _labels(other)
        config = read_idle(theirs, namespace, "").config
        if config is None or other.get("Id") == target.get("Id"):
            continue
        deps = (
            config.depends_on
            or parse_depends_on(theirs.get(COMPOSE_DEPENDS_ON, ""), strict=False)[0]
        )
        same_project = bool(project) and theirs.get("com.docker.compose.project") == project
        for dep in deps:
            if dep.name == name or (same_project and dep.name == service):
                names = other.get("Names") or [""]
                return str(names[0]).lstrip("/")
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": f"socket-proxy: {message}"}, status=status)


async def _json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(URL(UPSTREAM + url, encoded=True)) as answer:
        body = await answer.read()
        return answer.status, json.loads(body) if answer.status == 200 else body


async def forward_lifecycle(
    session: aiohttp.ClientSession, call: LifecycleCall, namespace: str
) -> web.Response:
    """Check ``call``'s container and forward the call, or refuse it (403)."""
    what = f"POST {call.version}/containers/{call.ref}/{call.action}"
    status, doc = await _json(session, f"{call.version}/containers/{call.ref}/json")
    if status != 200:
        return web.Response(status=status, body=doc, content_type="application/json")
    why = "it has a sleep/wake label"
    if not sleeps(_labels(doc), namespace):
        _, listed = await _json(session, f"{call.version}/containers/json?all=1")
        dependent = depends_on_it(doc, listed if isinstance(listed, list) else [], namespace)
        if dependent is None:
            logger.warning("denied {}: no {}.idle_timeout label", what, namespace)
            return _error(
                403, f"{what} is not allowed: the container has no {namespace}.idle_timeout label"
            )
        why = f"{dependent} (sleep/wake) depends on it"
    query = f"?{urlencode(call.params)}" if call.params else ""
    url = URL(f"{UPSTREAM}{call.version}/containers/{doc['Id']}/{call.action}{query}", encoded=True)
    logger.info("{} ({})", what, why)
    async with session.post(url) as answer:
        body = await answer.read()
        content_type = answer.headers.get("Content-Type", "application/json").split(";")[0]
        return web.Response(status=answer.status, body=body or None, content_type=content_type)
