"""Upstream pools: the members of one stream, whether each may take new connections, and the
choice of a member for each new TCP connection or UDP session.

A member is available when it is not asleep, Docker does not say ``starting``/``unhealthy``,
its active probe (if any) says up, and no dial to it failed within the last ``cooldown``
seconds (passive mark-down). A sleeping member (its backend is stopped until something wakes
it, e.g. a ``pre_dial`` hook) is never picked.

Modes: ``round_robin`` (the next available member in turn), ``least_conn`` (the
fewest live connections, ties in turn) and ``ip_hash`` (rendezvous hashing of the client
address, so a client keeps its member while that member is available and only the clients
of a member that leaves move). Runs once per new connection or session, never per read.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from godoxy_streams.streams.sockets import Address, where

PASSIVE_COOLDOWN = 5.0  # seconds a member sits out after a failed dial
MODES = ("round_robin", "least_conn", "ip_hash")
MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x`` (rendezvous scores)."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True)
class MemberSpec:
    """What the manager tells a pool about one member."""

    key: str  # stable identity across updates (container id and alias)
    address: Address
    name: str = ""  # the container (or file entry) behind it, for display
    docker_health: str | None = None  # Docker's HEALTHCHECK state, when the container has one
    sleeping: bool = False  # its backend sleeps (or is being woken): not picked


@dataclass(eq=False)
class PoolMember:
    """A member's live state: availability inputs and counters."""

    key: str
    address: Address
    name: str = ""
    docker_health: str | None = None
    sleeping: bool = False
    probe_up: bool = True
    probe_error: str | None = None
    passive_until: float = 0.0
    active: int = 0  # live connections / sessions
    total: int = 0  # connections / sessions sent to it
    failures: int = 0  # failed dials
    last_error: str | None = None
    weight_key: int = field(default=0, repr=False)  # crc32 of the key, for ip_hash

    def available(self, now: float) -> bool:
        docker = self.docker_health
        return (
            (docker is None or docker == "healthy")
            and self.probe_up
            and now >= self.passive_until
            and not self.sleeping
        )

    def state(self, now: float) -> str:
        """``healthy``, or why not: ``sleeping``, ``starting``/``unhealthy`` (Docker),
        ``down`` (probe), ``failing`` (a recent dial failed)."""
        if self.sleeping:
            return "sleeping"
        if self.docker_health in ("starting", "unhealthy"):
            return self.docker_health
        if not self.probe_up:
            return "down"
        if now < self.passive_until:
            return "failing"
        return "healthy"


class Pool:
    """The members of one stream and the rule that picks one per new connection."""

    def __init__(self, mode: str = "round_robin", cooldown: float = PASSIVE_COOLDOWN) -> None:
        if mode not in MODES:
            raise ValueError(f"load balance mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.cooldown = cooldown
        self.members: list[PoolMember] = []
        self.on_change: Callable[[], None] | None = None
        self._turn = 0

    def update(self, specs: Iterable[MemberSpec], mode: str | None = None) -> None:
        """Set the members (in order); a member already known keeps its state and counters."""
        if mode is not None and mode != self.mode:
            if mode not in MODES:
                raise ValueError(f"unknown load balance mode {mode!r}")
            self.mode = mode
        known = {m.key: m for m in self.members}
        members = []
        for spec in specs:
            member = known.get(spec.key)
            if member is None:
                crc = zlib.crc32(spec.key.encode())
                member = PoolMember(spec.key, spec.address, weight_key=crc)
            elif member.address != spec.address:
                member.address, member.passive_until, member.probe_up = spec.address, 0.0, True
            member.name, member.docker_health = spec.name, spec.docker_health
            member.sleeping = spec.sleeping
            members.append(member)
        self.members = members
        self.changed()

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def member(self, key: str) -> PoolMember | None:
        return next((m for m in self.members if m.key == key), None)

    def set_probe(self, key: str, up: bool, error: str | None) -> None:
        """An active probe's verdict on one member."""
        member = self.member(key)
        if member is None:
            return
        member.probe_error = error
        if member.probe_up != up:
            member.probe_up = up
            if up:
                member.passive_until = 0.0
            self.changed()

    def failed(self, member: PoolMember, error: str) -> None:
        """A dial to ``member`` failed: count it and keep it out for ``cooldown`` seconds
        (only when another member could serve; a lone member is always tried)."""
        member.failures += 1
        member.last_error = error
        if len(self.members) > 1:
            member.passive_until = time.monotonic() + self.cooldown
            self.changed()

    def needs_choice(self) -> bool:
        """Whether connections must ask ``pick``: several members, or one that is out."""
        members = self.members
        return len(members) != 1 or not members[0].available(time.monotonic())

    def any_available(self) -> bool:
        now = time.monotonic()
        return any(m.available(now) for m in self.members)

    def pick(self, client: str = "", exclude: tuple[PoolMember, ...] = ()) -> PoolMember | None:
        """The member for a new connection from ``client``; None when none is available."""
        now = time.monotonic()
        members = self.members
        count = len(members)
        if self.mode == "ip_hash":
            seed = zlib.crc32(client.encode())
            best, best_score = None, -1
            for m in members:
                if m not in exclude and m.available(now):
                    score = mix64(seed ^ (m.weight_key << 32))
                    if score > best_score:
                        best, best_score = m, score
            return best
        start = self._turn
        chosen: PoolMember | None = None
        for step in range(count):
            index = (start + step) % count
            m = members[index]
            if m in exclude or not m.available(now):
                continue
            if self.mode == "round_robin":
                self._turn = index + 1
                return m
            if chosen is None or m.active < chosen.active:
                chosen = m
        if chosen is not None:
            self._turn = members.index(chosen) + 1
        return chosen

    def view(self) -> list[dict[str, object]]:
        """Each member for the status API."""
        now = time.monotonic()
        return [
            {
                "key": m.key,
                "host": m.address[0],
                "port": m.address[1],
                "container": m.name,
                "state": m.state(now),
                "docker_health": m.docker_health,
                "active": m.active,
                "total": m.total,
                "failures": m.failures,
                "last_error": m.probe_error or m.last_error,
            }
            for m in self.members
        ]


class PooledStream:
    """The pool part of a TCP or UDP stream: ``set_pool`` installs or updates the members;
    ``balancing`` says whether new connections must ask the pool (several members, or a lone
    member that is out); otherwise the lone member is the plain ``target``."""

    pool: Pool | None = None
    balancing = False

    def set_pool(self, members: Iterable[MemberSpec], mode: str = "round_robin") -> Pool:
        """Spread new connections over ``members`` (a known member keeps its state)."""
        if self.pool is None:
            self.pool = Pool(mode)
            self.pool.on_change = self.pool_changed
        self.pool.update(members, mode)
        return self.pool

    def pool_changed(self) -> None:
        pool = self.pool
        self.balancing = pool is not None and pool.needs_choice()
        if pool is not None and not self.balancing:
            self.retarget(pool.members[0].address)
        self.balancing_changed()

    def retarget(self, target: Address) -> None:
        raise NotImplementedError

    def balancing_changed(self) -> None:
        """Called after ``balancing`` may have changed."""


def describe(members: Iterable[PoolMember]) -> str:
    return ", ".join(where(m.address) for m in members)
