"""Reading the routes a page at a time, one route's history, and the event timeline:
``/api/routes?offset=&limit=&q=&history=``, ``/api/routes/{id}/history`` and
``/api/events?route=&kind=&since=&limit=``.

Pure functions from a ``Snapshot`` and the query string to a JSON document (the handlers in
``status_api`` only wrap them). Without paging parameters ``/api/routes`` answers as it always
did: every route, label error and container. With them, routes are filtered by ``q`` (a
case-insensitive substring of alias, container, scheme, listen and target addresses, state,
id or TLS server names), sorted (running, unhealthy, conflict, error; then alias, scheme)
and cut to ``[offset, offset + limit)``; label errors and containers are filtered by ``q``
and cut to ``limit`` too, each list with its total. Only the routes of the page read their counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from godoxy_streams.errors import LabelError
from godoxy_streams.events import KINDS, select
from godoxy_streams.snapshot import ROUTE_STATES, RouteView, Snapshot

MAX_LIMIT = 1000  # routes (and errors, containers) per page at most
EVENTS_LIMIT = 200  # events per answer unless asked otherwise
# as the page lists them
STATE_ORDER = {"running": 0, "sleeping": 1, "unhealthy": 2, "conflict": 3, "error": 4}


class BadQuery(ValueError):
    """A query parameter the API cannot read (answered with 400 and this message)."""


def _int(params: Mapping[str, str], name: str, default: int | None) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > 9:
        raise BadQuery(f"{name} must be a whole number from 0 to 999999999, not {text[:40]!r}")
    return int(text)


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class RouteQuery:
    offset: int = 0
    limit: int | None = None  # None: every route (the compatible default)
    q: str = ""
    history: bool = False  # each route of the answer carries its history

    @property
    def paged(self) -> bool:
        return self.limit is not None or self.offset > 0 or bool(self.q)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RouteQuery:
        limit = _int(params, "limit", None)
        return cls(
            offset=_int(params, "offset", 0) or 0,
            limit=None if limit is None else min(limit, MAX_LIMIT),
            q=params.get("q", "").strip().lower()[:200],
            history=_flag(params, "history"),
        )


def matches(route: RouteView, needle: str) -> bool:
    spec = route.spec
    text = (
        f"{spec.alias}\n{spec.origin.name}\n{spec.scheme}\n{route.listen}\n"
        f"{spec.target_host}:{spec.target_port}\n{route.state}\n{route.id}\n{' '.join(spec.sni)}"
    )
    return needle in text.lower()


def _error_text(e: LabelError) -> str:
    return "\n".join(
        str(v or "") for v in (e.container, e.label, e.value, e.message, e.alias)
    ).lower()


def _row(snapshot: Snapshot, route: RouteView, history: bool) -> dict[str, Any]:
    row = route.as_json()
    if history:
        found = snapshot.history_of(route.id)
        row["history"] = found.as_json() if found is not None else None
    return row


def routes_document(snapshot: Snapshot, query: RouteQuery) -> dict[str, Any]:
    """The body of ``/api/routes`` for ``query``."""
    counts = dict.fromkeys(ROUTE_STATES, 0)
    for route in snapshot.routes:
        counts[route.state] += 1
    if not query.paged:
        document = snapshot.routes_document()
        if query.history:
            document["routes"] = [_row(snapshot, r, True) for r in snapshot.routes]
        return {**document, "total": len(snapshot.routes), "counts": counts}
    needle = query.q
    routes = [r for r in snapshot.routes if matches(r, needle)] if needle else list(snapshot.routes)
    routes.sort(key=lambda r: (STATE_ORDER.get(r.state, 9), r.spec.alias, r.spec.scheme, r.id))
    end = None if query.limit is None else query.offset + query.limit
    cap = query.limit if query.limit is not None else MAX_LIMIT
    errors = [e.as_dict() for e in snapshot.errors if not needle or needle in _error_text(e)]
    containers = [
        c.as_json()
        for c in snapshot.containers
        if not needle or needle in f"{c.name}\n{c.engine}\n{c.state}\n{c.reason}".lower()
    ]
    return {
        "routes": [_row(snapshot, r, query.history) for r in routes[query.offset : end]],
        "total": len(routes),
        "offset": query.offset,
        "limit": query.limit,
        "counts": counts,
        "errors": errors[:cap],
        "errors_total": len(errors),
        "containers": containers[:cap],
        "containers_total": len(containers),
    }


def history_document(snapshot: Snapshot, route_id: str) -> dict[str, Any] | None:
    """The body of ``/api/routes/{id}/history``; None for no running route of that id."""
    found = snapshot.history_of(route_id)
    if found is None:
        return None
    return {"id": route_id, **found.as_json()}


def events_document(snapshot: Snapshot, params: Mapping[str, str]) -> dict[str, Any]:
    """The body of ``/api/events``: ``route`` (an id), ``kind`` (comma-separated),
    ``since`` (epoch seconds), ``limit`` (the newest N, 200 by default)."""
    kinds = [k for k in params.get("kind", "").replace(" ", ",").split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise BadQuery(f"unknown event kind {unknown[0][:40]!r}; kinds: {', '.join(KINDS)}")
    since_text = params.get("since", "").strip()
    try:
        since = float(since_text) if since_text else None
    except ValueError:
        raise BadQuery(f"since must be a time in epoch seconds, not {since_text[:40]!r}") from None
    found = select(
        snapshot.timeline,
        route=params.get("route", "").strip() or None,
        kinds=kinds,
        since=since,
        limit=_int(params, "limit", EVENTS_LIMIT),
    )
    return {"events": [e.as_json() for e in found], "kinds": list(KINDS)}
