"""From the reconciler's containers to the sleep/wake runtime's targets: every container with
sleep/wake, its ``depends_on`` names resolved to containers (``decide.sleep.Neighbours``), and
those dependencies, each with the running containers that depend on it (a dependency is only
stopped with its dependent when nothing else running needs it)."""

from __future__ import annotations

from collections.abc import Sequence

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.decide.sleep import Neighbour, Neighbours
from godoxy_streams.labels import ParseResult
from godoxy_streams.labels.idle import COMPOSE_DEPENDS_ON, Dependency, parse_depends_on
from godoxy_streams.runtime.sleepers import Dep, EngineKey, SleepTarget

Entry = tuple[ContainerInfo, ParseResult]


def _neighbour(info: ContainerInfo, result: ParseResult) -> Neighbour:
    aliases = frozenset(route.alias for route in result.routes)
    return Neighbour(
        info.engine, info.id, info.name, info.compose_project, info.compose_service, aliases
    )


def _depends_on(info: ContainerInfo, result: ParseResult) -> tuple[Dependency, ...]:
    if result.idle is not None:
        return result.idle.depends_on
    raw = info.labels.get(COMPOSE_DEPENDS_ON, "")
    return parse_depends_on(raw, strict=False)[0] if raw.strip() else ()


def sleep_targets(entries: Sequence[Entry]) -> dict[EngineKey, SleepTarget]:
    """The containers that sleep and their dependencies, keyed by (engine, id)."""
    if not any(result.idle is not None for _, result in entries):
        return {}
    known = {(i.engine, i.id): (_neighbour(i, r), i, r) for i, r in entries}
    index = Neighbours(n for n, _, _ in known.values())
    resolved: dict[EngineKey, tuple[list[Dep], list[str]]] = {}
    for key, (owner, _, result) in known.items():
        if result.idle is None:
            continue
        deps, missing = resolved.setdefault(key, ([], []))
        for dep in result.idle.depends_on:
            found = index.find(dep.name, owner)
            if found is None:
                missing.append(dep.name)
            else:
                deps.append(Dep(found.key, found.name, dep.wait_healthy))
    needed: dict[EngineKey, set[EngineKey]] = {
        d.key: set() for deps, _ in resolved.values() for d in deps
    }
    if needed:
        for key, (owner, info, result) in known.items():
            if info.running:
                for dep in _depends_on(info, result):
                    found = index.find(dep.name, owner)
                    if found is not None and found.key in needed:
                        needed[found.key].add(key)
    targets: dict[EngineKey, SleepTarget] = {}
    for key in set(resolved) | set(needed):
        _, info, result = known[key]
        deps, missing = resolved.get(key, ([], []))
        targets[key] = SleepTarget(
            engine=info.engine,
            id=info.id,
            name=info.name,
            state=info.state,
            health=info.health,
            config=result.idle,
            deps=tuple(deps),
            missing=tuple(missing),
            needed_by=frozenset(needed.get(key, ())),
        )
    return targets
