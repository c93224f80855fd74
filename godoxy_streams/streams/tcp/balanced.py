"""TCP connections of a pooled stream: ``Balanced`` picks a pool member for each connection,
fails over to the next available member when a dial fails (at most ``MAX_TRIES`` members per
connection, the failed one marked down passively), and resets a client at once when no member
is available. ``balanced_class`` layers it over whatever class the stream's options chose.

A stream uses these classes only while its pool needs a choice (several members, or a lone
member that is out), so a healthy single-upstream route keeps the plain relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from godoxy_streams.streams.sockets import where
from godoxy_streams.streams.tcp.relay import Conn, ConnOwner, reset

if TYPE_CHECKING:
    from godoxy_streams.streams.pool import PoolMember

MAX_TRIES = 3  # members dialled per client connection before giving up


class Balanced(Conn):
    """``Conn`` that dials a member of ``stream.pool`` and fails over."""

    if not TYPE_CHECKING:  # the classes ``balanced_class`` makes hold the slots
        __slots__ = ()

    member: PoolMember | None
    tried: tuple[PoolMember, ...]

    def __init__(self, stream: ConnOwner) -> None:
        super().__init__(stream)
        self.member = None
        self.tried = ()

    def client_host(self) -> str:
        """The client address ip_hash keys on (a PROXY header's source when there was one)."""
        client = getattr(self, "client", None)
        if client and client[0]:
            return str(client[0])
        peer = self.transport.get_extra_info("peername")
        return str(peer[0]) if peer else ""

    def dial(self, target: tuple[str, int]) -> None:
        pool = self.stream.pool
        assert pool is not None
        member = pool.pick(self.client_host() if pool.mode == "ip_hash" else "", self.tried)
        if member is None:
            self.no_member()
            return
        self.dial_member(member)

    def dial_member(self, member: PoolMember) -> None:
        self.member = member
        member.active += 1
        member.total += 1
        super().dial(member.address)

    def dial_failed(
        self, exc: BaseException, reason: str, target: tuple[str, int] | None = None
    ) -> None:
        member, stream = self.member, self.stream
        pool = stream.pool
        if member is not None and pool is not None:
            self.member = None
            member.active -= 1
            pool.failed(member, f"{reason}: {exc}")
            if reason != "pre_dial" and not self.lost and len(self.tried) + 1 < MAX_TRIES:
                self.tried += (member,)
                host = self.client_host() if pool.mode == "ip_hash" else ""
                after = pool.pick(host, self.tried)
                if after is not None:
                    stream.stats.count_dial_error(reason)
                    stream.log.bind(dst=where(member.address), reason=reason).warning(
                        f"dial failed ({reason}): {exc!r}; trying {where(after.address)}"
                    )
                    self.dial_member(after)
                    return
        super().dial_failed(exc, reason, target)

    def no_member(self) -> None:
        stream = self.stream
        stream.stats.no_upstream += 1
        stream.refusals.note("no_upstream", "no healthy upstream; connection closed")
        self.note("no_upstream")
        reset(self.transport)

    def side_gone(self) -> None:
        super().side_gone()
        if self.sides == 0 and self.member is not None:
            self.member.active -= 1
            self.member = None


_CLASSES: dict[type[Conn], type[Conn]] = {}


def balanced_class(base: type[Conn]) -> type[Conn]:
    """``base`` with ``Balanced`` on top (made once per base)."""
    made = _CLASSES.get(base)
    if made is None:
        namespace = {"__slots__": ("member", "tried")}
        made = _CLASSES[base] = cast(
            "type[Conn]", type(f"Balanced{base.__name__}", (Balanced, base), namespace)
        )
    return made
