"""The label grammar (docs/labels.md): a container's labels, or the static routes file, in;
validated ``RouteSpec`` routes and per-route errors out. Pure functions, no I/O."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.errors import LabelError
from godoxy_streams.labels.context import ParseContext, default_alias
from godoxy_streams.labels.fields import RouteFacts, RouteResult, build_routes
from godoxy_streams.labels.grammar import Expansion, expand
from godoxy_streams.labels.idle import asleep_routes, asleep_view, read_idle
from godoxy_streams.labels.result import ParseResult
from godoxy_streams.labels.static import parse_static_routes
from godoxy_streams.labels.target import Target, check_label_host, container_target
from godoxy_streams.model import RouteOrigin

__all__ = ["ParseContext", "ParseResult", "has_labels", "parse_container", "parse_static_routes"]


def without_protocols(result: ParseResult, protos: frozenset[str], engine: str) -> ParseResult:
    """``result`` with its routes of protocols not in ``protos`` turned into errors (an
    engine, such as an agent, that cannot carry them)."""
    kept, errors = [], list(result.errors)
    for route in result.routes:
        if route.proto in protos:
            kept.append(route)
        else:
            errors.append(
                LabelError(
                    f"engine {engine} cannot carry {route.proto.upper()} routes "
                    f"(it serves {', '.join(sorted(protos)) or 'none'})",
                    container=route.origin.name,
                    alias=route.alias,
                )
            )
    return replace(result, routes=tuple(kept), errors=tuple(errors))


def has_labels(labels: Mapping[str, str], namespace: str) -> bool:
    prefix = namespace.lower() + "."
    return any(key.lower().startswith(prefix) for key in labels)


def _origin(info: ContainerInfo, ctx: ParseContext) -> RouteOrigin:
    return RouteOrigin(
        kind="compose" if ctx.mode == "compose" else "docker",
        name=info.name,
        id=info.id,
        created=info.created,
        engine=info.engine,
        compose_project=info.compose_project,
        compose_service=info.compose_service,
        health=info.health if info.health in ("starting", "healthy", "unhealthy") else None,
    )


def container_facts(info: ContainerInfo, ctx: ParseContext, target: Target) -> RouteFacts:
    """What every route of the container shares: its address and the ports it exposes."""
    exposed: dict[int, set[str]] = {}
    for port in info.ports:
        exposed.setdefault(port.private, set()).add(port.proto)
    return RouteFacts(
        container=info.name,
        origin=_origin(info, ctx),
        target_host=target.host,
        target_problem=target.problem,
        exposed={p: frozenset(s) for p, s in exposed.items()},
        published={(p.private, p.proto): p.public for p in info.ports if p.public},
        remote=ctx.remote_host is not None,
        label_host_check=lambda text: check_label_host(text, info, ctx),
        default_bind=ctx.default_bind,
        tls=ctx.tls_facts(),
    )


def alias_routes(expansion: Expansion, facts: RouteFacts) -> ParseResult:
    """The routes of every alias; an alias whose labels did not expand cleanly has none."""
    result = ParseResult(errors=tuple(expansion.stray_errors))
    for alias in expansion.aliases:
        built = build_routes(alias, expansion.fields.get(alias, {}), facts)
        grammar_errors = expansion.route_errors.get(alias, [])
        if grammar_errors:  # the route is invalid; keep what each label says, not the
            # consequences of a value the expansion had to drop ("needs a port")
            labelled = [e for e in built.errors if e.label is not None]
            built = RouteResult(errors=grammar_errors + labelled)
        result = result.merged(built.as_result())
    return result


EXPANSIONS_KEPT = 256  # distinct label sets: replicas share one; relists skip parsing
_expansions: OrderedDict[tuple[object, ...], Expansion] = OrderedDict()


def expansion_of(info: ContainerInfo, namespace: str) -> Expansion:
    """``expand`` of the container's labels, computed once for identical label sets (replicas,
    a relist of an unchanged container): an expansion without errors or notes names no
    container, so it is kept (least recently used first out) and shared. Never mutated."""
    alias = default_alias(info)
    key = (namespace, alias, tuple(sorted(info.labels.items())))
    kept = _expansions.get(key)
    if kept is not None:
        _expansions.move_to_end(key)
        return kept
    made = expand(info.labels, namespace=namespace, container=info.name, default_alias=alias)
    clean = not (made.notes or made.container_errors or made.stray_errors or made.route_errors)
    if clean:
        _expansions[key] = made
        if len(_expansions) > EXPANSIONS_KEPT:
            _expansions.popitem(last=False)
    return made


def parse_container(info: ContainerInfo, ctx: ParseContext) -> ParseResult:
    """The stream routes a container's labels declare (whatever its state), and its sleep/wake
    settings; a stopped or paused container with sleep/wake gets its routes with no target
    (``labels.idle``). Swarm services cannot be stopped and woken: their settings are noted."""
    idle = read_idle(info.labels, ctx.namespace, info.name)
    if idle.errors:
        return ParseResult(errors=idle.errors)
    config, notes = idle.config, idle.notes
    if config is not None and info.node_address is not None:
        config, notes = None, (f"{info.name}: sleep/wake is not supported for Swarm services",)
    if config is not None and not info.running:
        parsed = _parse_labels(*asleep_view(info, ctx))
        parsed = replace(parsed, routes=asleep_routes(parsed.routes))
    else:
        parsed = _parse_labels(info, ctx)
    return replace(parsed, notes=parsed.notes + notes, idle=config)


def _parse_labels(info: ContainerInfo, ctx: ParseContext) -> ParseResult:
    if not has_labels(info.labels, ctx.namespace):
        return ParseResult(labelled=False)
    expansion = expansion_of(info, ctx.namespace)
    notes, ignored = tuple(expansion.notes), tuple(expansion.ignored)
    if expansion.container_errors:
        errors = tuple(expansion.container_errors)
        return ParseResult(errors=errors, notes=notes, ignored=ignored)
    if expansion.exclude:
        return ParseResult(notes=notes, excluded=True, ignored=ignored)
    target = container_target(info, expansion.network, ctx)
    if target.error is not None:
        return ParseResult(errors=(target.error,), notes=notes, ignored=ignored)
    notes += (target.note,) if target.note else ()
    routes = alias_routes(expansion, container_facts(info, ctx, target))
    return replace(routes, notes=notes + routes.notes, ignored=ignored + routes.ignored)
