"""Incremental desired state: each source's routes kept apart, decisions redone only for the
listen sockets a change touches.

Routes interact (conflict, pool) only within a socket group: the same protocol and port (any
bind), or an automatically picked port (the route alone). ``DesiredIndex`` keeps every
contributor's routes (a container, keyed by engine and id; the static routes file) indexed by
group, and the decision per group. Replacing one contributor's routes marks the groups its
old and new routes are in; ``decide`` runs ``build_desired`` and ``make_plan`` for those
groups only, so the work per event does not grow with the number of containers.

The result equals deciding everything from scratch (``build_desired`` over every candidate,
``make_plan`` against every running route; the property tests check it): a group's decision
depends only on its candidates and on which of them hold a socket now (``holding``), and a
change of either marks the group. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from godoxy_streams.decide.desired import (
    Conflict,
    Identity,
    SocketGroup,
    build_desired,
    identity,
    socket_group,
)
from godoxy_streams.decide.plan import Plan, make_plan
from godoxy_streams.model import RouteKey, RouteSpec

Contributor = tuple[str, ...]  # ("file",), or (engine, container id)


def _member_identities(spec: RouteSpec) -> list[Identity]:
    return [identity(m, spec.proto) for m in spec.members]


class DesiredIndex:
    """Candidates by socket group, the decision per group, and what is held now.

    Kept compact (tuples and lists, no container per route that is not needed): it holds an
    entry for every route the daemon knows."""

    def __init__(self) -> None:
        self._routes: dict[Contributor, tuple[RouteSpec, ...]] = {}
        # the candidates of each group with their contributor (one contributor, the routes
        # file, may have thousands of routes: a group never walks them all)
        self._by_group: dict[SocketGroup, list[tuple[Contributor, RouteSpec]]] = {}
        self._candidate_groups: dict[Identity, list[SocketGroup]] = {}  # a multiset
        self._winners: dict[SocketGroup, tuple[tuple[RouteKey, RouteSpec], ...]] = {}
        self._conflicts: dict[SocketGroup, tuple[Conflict, ...]] = {}
        self._running: dict[SocketGroup, list[RouteKey]] = {}
        self._held: dict[Identity, int] = {}  # members of running routes, counted
        self._dirty: set[SocketGroup] = set()

    # -- input -----------------------------------------------------------------------------
    def set_routes(self, who: Contributor, routes: Iterable[RouteSpec]) -> bool:
        """Replace ``who``'s candidate routes; True when they changed (groups marked). The
        work is in proportion to ``who``'s routes, whatever the others hold."""
        new = tuple(routes)
        old = self._routes.get(who, ())
        if old == new:
            return False
        kept = set(old) & set(new)  # a routes file edit touches only the routes it changed
        for route in old:
            if route not in kept:
                self._drop(who, route)
        if new:
            self._routes[who] = new
        else:
            self._routes.pop(who, None)
        for route in new:
            if route not in kept:
                self._add(who, route)
        return True

    def _add(self, who: Contributor, route: RouteSpec) -> None:
        group = socket_group(route.key)
        self._dirty.add(group)
        self._by_group.setdefault(group, []).append((who, route))
        self._candidate_groups.setdefault(identity(route), []).append(group)

    def _drop(self, who: Contributor, route: RouteSpec) -> None:
        group = socket_group(route.key)
        self._dirty.add(group)
        entries = self._by_group[group]
        entries.remove((who, route))
        if not entries:
            del self._by_group[group]
        ident = identity(route)
        groups = self._candidate_groups[ident]
        groups.remove(group)
        if not groups:
            del self._candidate_groups[ident]

    def mark(self, keys: Iterable[RouteKey]) -> None:
        """Decide these sockets' groups again at the next ``decide`` (e.g. a failed bind)."""
        self._dirty.update(socket_group(key) for key in keys)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def marked(self) -> int:
        """How many socket groups the next ``decide`` will decide."""
        return len(self._dirty)

    # -- decision --------------------------------------------------------------------------
    def candidates(self, group: SocketGroup) -> list[RouteSpec]:
        return [route for _, route in self._by_group.get(group, ())]

    def decide(self, running: Mapping[RouteKey, RouteSpec]) -> Plan:
        """Decide the marked groups again; the plan that brings ``running`` (every running
        route, by socket) to the new decisions there."""
        stop: list[RouteKey] = []
        retarget: list[RouteSpec] = []
        start: list[RouteSpec] = []
        for group in self._dirty:
            winners = self._decide_group(group)
            now = {key: running[key] for key in self._running.get(group, ()) if key in running}
            part = make_plan(winners, now)
            stop += part.stop
            retarget += part.retarget
            start += part.start
        self._dirty.clear()
        return Plan(
            stop=tuple(sorted(stop)),
            retarget=tuple(sorted(retarget, key=lambda r: r.key)),
            start=tuple(sorted(start, key=lambda r: r.key)),
        )

    def _decide_group(self, group: SocketGroup) -> dict[RouteKey, RouteSpec]:
        """The group's winners now (kept), and its conflicts (kept when there are any)."""
        candidates = self.candidates(group)
        if len(candidates) == 1:  # the common case: one route, nothing to rank
            winners = {candidates[0].key: candidates[0]}
            conflicts: tuple[Conflict, ...] = ()
        else:
            state = build_desired(candidates, holding=self._held.keys())
            winners, conflicts = dict(state.routes), state.conflicts
        if winners:
            self._winners[group] = tuple(winners.items())
        else:
            self._winners.pop(group, None)
        if conflicts:
            self._conflicts[group] = conflicts
        else:
            self._conflicts.pop(group, None)
        return winners

    def applied(
        self,
        before: Mapping[RouteKey, RouteSpec | None],
        after: Mapping[RouteKey, RouteSpec],
    ) -> None:
        """A plan was applied: ``before`` has the touched sockets' running routes before it
        (None: not running), ``after`` every running route now. Groups whose candidates
        started or stopped holding a socket are marked (their ranking changed)."""
        flipped: set[Identity] = set()
        for key, old in before.items():
            new = after.get(key)
            if old == new:
                continue
            self._note_running(key, new is not None)
            for ident in _member_identities(old) if old is not None else ():
                count = self._held[ident] - 1
                if count:
                    self._held[ident] = count
                else:
                    del self._held[ident]
                    flipped.add(ident)
            for ident in _member_identities(new) if new is not None else ():
                count = self._held.get(ident, 0)
                self._held[ident] = count + 1
                if not count:
                    flipped.symmetric_difference_update({ident})
        for ident in flipped:
            self._dirty.update(self._candidate_groups.get(ident, ()))

    def _note_running(self, key: RouteKey, running: bool) -> None:
        group = socket_group(key)
        keys = self._running.setdefault(group, [])
        if key in keys:
            if not running:
                keys.remove(key)
        elif running:
            keys.append(key)
        if not keys:
            del self._running[group]

    # -- reading ---------------------------------------------------------------------------
    def desired(self) -> dict[RouteKey, RouteSpec]:
        """Every group's winners (walks every group: for reports, not per event)."""
        return {key: spec for pairs in self._winners.values() for key, spec in pairs}

    def conflicts(self) -> tuple[Conflict, ...]:
        """Every conflict, in a stable order (walks only the groups that have one)."""
        return tuple(c for g in sorted(self._conflicts) for c in self._conflicts[g])
