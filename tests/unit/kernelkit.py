"""Sample kernel tables for the renderer's tests: the unit tests read their text, and the
kernel tests have ``nft -c`` check every one of them (tests/kernel/test_nft_check.py)."""

from __future__ import annotations

from typing import Any

from godoxy_streams.runtime.kernel.routes import KernelRoute, KernelTable, Socket, Upstream

A = Upstream("172.24.0.2", 7, "container-a")
B = Upstream("172.24.0.3", 7, "container-b")
C = Upstream("172.24.0.4", 8, "container-c")


def kroute(route_id: int = 1, protocol: str = "tcp", port: int = 7007, **extra: Any) -> KernelRoute:
    """A kernel route on every local address, to member A unless ``members`` says otherwise."""
    fields: dict[str, Any] = {"bind": "0.0.0.0", "members": (A,), **extra}
    return KernelRoute(route_id, protocol, listen_port=port, **fields)  # type: ignore[arg-type]


SAMPLES: dict[str, KernelTable] = {
    "empty": KernelTable(),
    "tcp": KernelTable(routes=(kroute(),)),
    "udp": KernelTable(routes=(kroute(protocol="udp", udp_timeout=60, max_connections=10000),)),
    "round_robin": KernelTable(routes=(kroute(members=(A, B, C)),)),
    "ip_hash": KernelTable(routes=(kroute(protocol="udp", members=(A, B), balance="ip_hash"),)),
    "acl": KernelTable(
        routes=(kroute(allow=("198.18.0.0/15", "::ffff:10.0.0.0/104"), deny=("198.18.0.3",)),),
        allow=("0.0.0.0/0",),
        deny=("203.0.113.0/24",),
    ),
    "v6_only_allow": KernelTable(routes=(kroute(allow=("fd00::/8",)),)),
    "limits": KernelTable(
        routes=(
            kroute(max_connections=2, per_source_connections=5, rate=0.5, burst=3, idle_timeout=90),
        )
    ),
    "bound": KernelTable(routes=(kroute(bind="198.18.0.1"), kroute(2, port=7008))),
    "shadowed": KernelTable(
        routes=(kroute(protocol="udp"),),
        userspace_sockets=(Socket("udp", "192.0.2.2", 7007), Socket("tcp", "192.0.2.2", 7007)),
        userspace_sources=("198.18.0.9", "fd00::1"),
    ),
    "memberless": KernelTable(routes=(kroute(members=(), max_connections=5), kroute(2, port=7008))),
    "mixed": KernelTable(
        routes=(
            kroute(1, members=(A, B), rate=5, burst=10, max_connections=100),
            kroute(2, "udp", members=(A, B), balance="ip_hash", udp_timeout=5),
            kroute(3, bind="198.18.0.1", port=7008, idle_timeout=3600, name='odd "name"\n'),
        ),
        deny=("198.18.0.99",),
    ),
}
