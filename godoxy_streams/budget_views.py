"""The read model's view of the budgets per plane: the status API's connections against its
cap, and the process's descriptors against its limit with the data plane's budget of them.
Plain frozen data, no I/O; part of ``snapshot.Snapshot`` (``/healthz``, the metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiView:
    """The status API's own budget: its connection cap, the connections open now, those
    turned away at the cap and those cut for a missed deadline."""

    cap: int
    open: int = 0
    refused: int = 0
    cut: int = 0

    def as_json(self) -> dict[str, int]:
        return {"cap": self.cap, "open": self.open, "refused": self.refused, "cut": self.cut}


@dataclass(frozen=True, slots=True)
class DescriptorView:
    """The process's descriptors against its limit, and the data plane's budget of them:
    its size, what each protocol uses, each route's guarantee and each protocol's reserve,
    and the connections and sessions it refused."""

    limit: int  # RLIMIT_NOFILE in force
    open: int  # descriptors open (-1: unknown)
    budget: int  # the data plane's share of ``limit``
    used: tuple[tuple[str, int], ...] = ()  # by protocol
    guaranteed_per_route: int = 0
    reserved_per_protocol: int = 0
    refused: int = 0

    def as_json(self, api: ApiView | None) -> dict[str, object]:
        body: dict[str, object] = {
            "limit": self.limit,
            "open": self.open,
            "data_plane": {
                "budget": self.budget,
                **dict(self.used),
                "guaranteed_per_route": self.guaranteed_per_route,
                "reserved_per_protocol": self.reserved_per_protocol,
                "refused": self.refused,
            },
        }
        if api is not None:
            body["api"] = api.as_json()
        return body
