"""The kernel fast path as one object the runtime drives: ``start`` (a crashed daemon's table
and DOCKER-USER rule are replaced, never duplicated), ``apply`` (the whole table in one
transaction; routes whose rules the kernel refuses are left out and named, so they fall back
to userspace with the error), counters and open flows for the API and metrics, ``kill`` of a
route's flows, and ``stop`` (table and rule removed; flows killed, or left to run out).
"""

from __future__ import annotations

from dataclasses import replace

from .conntrack import Conntrack, Flow, active_by_route
from .docker_user import DockerUser
from .nft import KernelError, Nftables
from .routes import KernelRoute, KernelTable, Proto, RouteCounters, TableObjects
from .rules import defined_objects, render


class KernelPath:
    """Our nftables table, our DOCKER-USER rule and our conntrack entries."""

    def __init__(
        self,
        nft: Nftables | None = None,
        conntrack: Conntrack | None = None,
        docker_user: DockerUser | None = None,
    ) -> None:
        self.nft = nft or Nftables()
        self.conntrack = conntrack or Conntrack()
        self.docker_user = docker_user or DockerUser()
        self._applied: TableObjects | None = None  # what the last apply left in the table

    async def start(self) -> list[str]:
        """An empty table of our own (whatever was there is replaced in the same transaction)
        and the DOCKER-USER accept; the iptables flavours that hold it."""
        await self._apply(KernelTable(), None)
        return await self.docker_user.ensure()

    async def apply(self, table: KernelTable) -> dict[int, str]:
        """Make the table hold ``table``, keeping the state of what stays (counters, ``ct
        count`` sets, rate meters). Returns {route_id: error} for routes left out because the
        kernel refused their rules (the others are applied); raises KernelError if even the
        table without them fails.

        What the table holds is known from the last apply; only after a failure (or when
        nothing was applied yet) is it listed from the kernel."""
        existing = self._applied if self._applied is not None else await self.nft.objects()
        try:
            await self._apply(table, existing)
            return {}
        except KernelError as error:
            first = error
        existing = await self.nft.objects()  # the kernel's word, in case the table was touched
        failed = await self._refused(table, list(table.routes), existing)
        kept = tuple(r for r in table.routes if r.route_id not in failed)
        try:
            await self._apply(replace(table, routes=kept), existing)
        except KernelError:
            raise first from None
        return failed

    async def _apply(self, table: KernelTable, existing: TableObjects | None) -> None:
        self._applied = None  # unknown until the transaction succeeded
        await self.nft.apply(render(table, existing))
        self._applied = defined_objects(table)

    async def _refused(
        self, table: KernelTable, routes: list[KernelRoute], existing: TableObjects | None
    ) -> dict[int, str]:
        """The routes the kernel refuses, by bisection with ``nft -c`` (nothing changes): a
        few checks find one bad route among many."""
        try:
            await self.nft.apply(render(replace(table, routes=tuple(routes)), existing), check=True)
            return {}
        except KernelError as e:
            if len(routes) <= 1:  # none left to blame: the fault is in the common part
                return {route.route_id: str(e) for route in routes}
        half = len(routes) // 2
        return {
            **await self._refused(table, routes[:half], existing),
            **await self._refused(table, routes[half:], existing),
        }

    async def counters(self) -> dict[int, RouteCounters]:
        return await self.nft.counters()

    async def flows(self) -> list[Flow]:
        return await self.conntrack.flows()

    async def active(self) -> dict[int, int]:
        """Open flows per route id."""
        return active_by_route(await self.conntrack.flows())

    async def kill(
        self, route_id: int, member: tuple[str, int] | None = None, protocol: Proto = "tcp"
    ) -> int:
        """End a route's flows now (only those to ``member`` when given): their conntrack
        entries go, so their next packets are reset. Without it, flows drain."""
        return await self.conntrack.kill(route_id, member, protocol)

    async def stop(self, *, kill: bool = False) -> None:
        """Remove the table and the DOCKER-USER rule; with ``kill``, end every flow first
        (otherwise they run on: their conntrack entries still carry the NAT)."""
        if kill:
            for route_id in sorted({f.route_id for f in await self.conntrack.flows()}):
                await self.conntrack.kill(route_id)
        self._applied = None
        await self.nft.delete_table()
        await self.docker_user.remove()
