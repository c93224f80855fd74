"""The static routes file (docs/labels.md "The static routes file"): operator-written routes,
no Docker needed.

Two layouts are read: ours, a ``routes:`` mapping of route names to fields, and GoDoxy's own
route files, aliases at the top level (as its file provider and ``providers.include`` read
them: ``x-`` keys are YAML-anchor holders, ``<<`` merges an anchor). A GoDoxy entry that is not
a stream route is noted and left to GoDoxy; in our layout it is an error. A document that is
neither layout is an error, never "0 routes" in silence. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

from godoxy_streams.errors import LabelError
from godoxy_streams.labels.context import ParseContext
from godoxy_streams.labels.fields import RouteFacts, build_routes
from godoxy_streams.labels.grammar import load_yaml_block, normalise_name
from godoxy_streams.labels.precedence import FieldValue
from godoxy_streams.labels.result import ParseResult
from godoxy_streams.model import RouteOrigin

LAYOUT_ERROR = (
    "expected a 'routes:' mapping of route names to fields, or GoDoxy's route-file layout "
    "(route names at the top level, each a mapping of fields)"
)


def route_entries(document: Any) -> tuple[dict[str, Any], bool] | None:
    """(route name -> body, whether the layout is ours), or None for neither layout."""
    if not isinstance(document, dict):
        return None
    entries = {str(k): v for k, v in document.items() if not str(k).startswith("x-")}
    if set(entries) == {"routes"}:
        routes = entries["routes"]
        if routes is None or routes == "":
            return {}, True
        return (_named(routes), True) if isinstance(routes, dict) else None
    if entries and all(body in (None, "") or isinstance(body, dict) for body in entries.values()):
        return entries, False
    return None


def _named(routes: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in routes.items() if not str(k).startswith("x-")}


def flat_fields(body: Any) -> dict[str, Any] | None:
    """A route's fields as dotted keys (YAML merge keys applied); None if it is no mapping."""
    if body is None or body == "":
        return {}
    if isinstance(body, str):
        return load_yaml_block(body)
    if not isinstance(body, dict):
        return None
    flat: dict[str, Any] = {}
    for key, value in merged(body).items():
        if isinstance(value, dict):
            for sub, inner in (flat_fields(value) or {}).items():
                flat[f"{normalise_name(str(key))}.{sub}"] = inner
        else:
            flat[str(key)] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return flat


def merged(body: dict[Any, Any]) -> dict[Any, Any]:
    """A YAML mapping with its ``<<`` merge key applied (its own keys win; with a list of
    mappings, earlier ones win)."""
    base = body.get("<<")
    sources = base if isinstance(base, list) else [base]
    if base is None or not all(isinstance(m, dict) for m in sources):
        return body
    out: dict[Any, Any] = {}
    for source in reversed(sources):
        out.update(merged(source))
    out.update({k: v for k, v in body.items() if k != "<<"})
    return out


def parse_static_routes(document: Any, ctx: ParseContext) -> ParseResult:
    """The routes of a static routes file (already loaded from YAML, all scalars as text)."""
    layout = route_entries(document)
    if layout is None:
        return ParseResult(errors=(LabelError(LAYOUT_ERROR, container="file"),))
    entries, ours = layout
    result = ParseResult()
    for name, body in entries.items():
        result = result.merged(static_route(name, body, ours, ctx))
    return result


def static_route(name: str, body: Any, ours: bool, ctx: ParseContext) -> ParseResult:
    """One entry of the file: its routes, errors and notes."""
    container = f"file:{name}"
    flat = flat_fields(body)
    if flat is None:
        error = LabelError("expected a mapping of fields", container=container, alias=name)
        return ParseResult(errors=(error,))
    prefix = "routes." if ours else ""
    fields = {
        normalise_name(key): FieldValue(value, f"{prefix}{name}.{key}", _text(value), "named", 1)
        for key, value in flat.items()
    }
    facts = RouteFacts(
        container=container,
        origin=RouteOrigin(kind="file", name=container),
        target_host="127.0.0.1",
        default_host_v6="::1",
        default_bind=ctx.default_bind,
        tls=ctx.tls_facts(paths_allowed=True),
    )
    built = build_routes(name.lower(), fields, facts)
    if ours and not built.routes and not built.errors:
        error = LabelError(
            "a static route needs a stream scheme (tcp, udp, ...) or a LISTEN:TARGET port",
            container=container,
            alias=name,
        )
        return ParseResult(errors=(error,))
    return built.as_result()


def _text(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)
