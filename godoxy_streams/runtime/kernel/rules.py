"""Render the kernel routes into one nft script that replaces the table ``inet godoxy_streams``
in a single transaction (``nft -f``: all of it applies, or none). Pure text; no I/O.

Two forms. Fresh (``existing=None``, at start): ``table; delete table; table {...}`` - any
table a crashed daemon left is replaced, never duplicated. Update (``existing`` = the names the
table holds now): flush every rule, delete the chains, maps and static sets, delete the
stateful objects no route wants any more, then define everything again. Definitions add, so
what carries state and is still wanted survives the update: named counters (connections,
refusals, packets and bytes each way), the ``ct count`` sets behind ``max_connections`` (the
connections a route holds keep counting) and the per-source rate meters.

The table, per packet of a new flow arriving from another host (nat prerouting, just before
Docker's): interfaces in ``skip_ifnames`` and ``userspace_sources`` return (the userspace
listener serves them); a vmap on (daddr, l4proto, dport) for specific binds, then on
(l4proto, dport) for addresses of this host, jumps to the route's chain: global ACL, route
ACL, per-source rate, per-source and total ``ct count``, conntrack timeout policy, then the
conntrack mark, the connections counter and the DNAT (one member; ``numgen inc`` for
round_robin; ``jhash`` of the client address over HASH_BUCKETS buckets for ip_hash, each
bucket given to its rendezvous-hash winner, so a member leaving moves only its own clients).
A refused TCP flow gets a reset, a refused UDP datagram is dropped. A forward chain counts
both directions of marked flows into the route's counters by ``ct mark`` maps. A route
without members keeps its counters and sets but captures nothing (the userspace listener
answers its clients, refusing for want of a healthy member).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from .routes import (
    MARK_BASE,
    MARK_MASK,
    TABLE,
    KernelRoute,
    KernelTable,
    TableObjects,
    Upstream,
    counter_name,
    whole_seconds,
)

HASH_BUCKETS = 64
DYNAMIC_SET_SIZE = 65535
RATE_SET_MIN_TIMEOUT = 60
COUNTER_KINDS = ("conns", "refused", "c2u", "u2c")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def render(table: KernelTable, existing: TableObjects | None = None) -> str:
    """The nft script that makes the table hold exactly ``table`` (see the module doc)."""
    body = _Body(table)
    head = _fresh_head() if existing is None else _update_head(existing, body.stateful())
    return "\n".join([*head, f"table {TABLE} {{", *body.lines(), "}", ""])


def defined_objects(table: KernelTable) -> TableObjects:
    """The names the table holds once ``render(table, ...)`` applied: what the next update
    deletes or keeps, known without listing the kernel's table."""
    body = _Body(table)
    state = body.stateful()
    live = bool(body.every)
    return TableObjects(
        chains=frozenset(
            [f"r{r.route_id}" for r in body.routes] + ["prerouting"] + (["forward"] if live else [])
        ),
        sets=state.sets | {name for name, _ in body.acl_sets},
        maps=frozenset(["ctr_c2u", "ctr_u2c"] if live else []),
        counters=state.counters,
        timeouts=state.timeouts,
    )


def _fresh_head() -> list[str]:
    return [f"table {TABLE}", f"delete table {TABLE}"]


def _update_head(existing: TableObjects, keep: TableObjects) -> list[str]:
    lines = [f"add table {TABLE}", f"flush table {TABLE}"]
    lines += [f"delete chain {TABLE} {name}" for name in sorted(existing.chains)]
    lines += [f"delete map {TABLE} {name}" for name in sorted(existing.maps)]
    lines += [f"delete set {TABLE} {name}" for name in sorted(existing.sets - keep.sets)]
    lines += [f"delete counter {TABLE} {n}" for n in sorted(existing.counters - keep.counters)]
    lines += [f"delete ct timeout {TABLE} {n}" for n in sorted(existing.timeouts - keep.timeouts)]
    return lines


def v4_networks(entries: Iterable[str]) -> list[str]:
    """The IPv4 part of ACL entries as disjoint CIDRs (IPv4-mapped IPv6 entries count as
    IPv4, as in the userspace ACL); the interval set elements of an nft set."""
    nets: list[ipaddress.IPv4Network] = []
    for entry in entries:
        net = ipaddress.ip_network(entry.strip(), strict=False)
        if isinstance(net, ipaddress.IPv6Network):
            if not net.subnet_of(_MAPPED) or net.prefixlen < 96:
                continue
            base = ipaddress.IPv4Address(int(net.network_address) - int(_MAPPED.network_address))
            net = ipaddress.IPv4Network((base, net.prefixlen - 96))
        nets.append(net)
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def rate_text(rate: float) -> str:
    """A rate per second as nft writes it, in the smallest unit that keeps it whole."""
    for unit, seconds in (("second", 1), ("minute", 60), ("hour", 3600)):
        scaled = rate * seconds
        if abs(scaled - round(scaled)) < 1e-9 and round(scaled) >= 1:
            return f"{round(scaled)}/{unit}"
    return f"{max(1, round(rate * 86400))}/day"


def bucket_owners(members: tuple[Upstream, ...], buckets: int = HASH_BUCKETS) -> list[Upstream]:
    """For each hash bucket, the member with the highest rendezvous score: removing a member
    reassigns only the buckets it held."""

    def score(member: Upstream, bucket: int) -> bytes:
        return hashlib.sha256(f"{member.identity}/{bucket}".encode()).digest()

    return [max(members, key=lambda m: score(m, b)) for b in range(buckets)]


def timeout_name(route: KernelRoute) -> str | None:
    """The conntrack timeout policy a route uses, named by its value (routes share it)."""
    if route.protocol == "udp" and route.udp_timeout is not None:
        return f"udp_{whole_seconds(route.udp_timeout)}s"
    if route.protocol == "tcp" and route.idle_timeout is not None:
        return f"tcp_idle_{whole_seconds(route.idle_timeout)}s"
    return None


def _rate_set(route: KernelRoute) -> str | None:
    """The meter of a route's per-source rate, named by its settings (a change of rate or
    burst starts a new meter; elements outlive a full refill of their bucket)."""
    if route.rate is None:
        return None
    count, _, unit = rate_text(route.rate).partition("/")
    timeout = max(RATE_SET_MIN_TIMEOUT, whole_seconds(route.burst / route.rate))
    return f"r{route.route_id}_rate4_{count}{unit[0]}_b{route.burst}_t{timeout}"


def _elements(items: Iterable[str]) -> str:
    return "elements = { " + ", ".join(items) + " }"


def _dnat(route: KernelRoute) -> str:
    members = route.members
    if len(members) == 1:
        return f"dnat ip to {members[0].address}:{members[0].port}"
    if route.balance == "ip_hash":
        owners = bucket_owners(members)
        pairs = [f"{i} : {m.address} . {m.port}" for i, m in enumerate(owners)]
        seed = f"jhash ip saddr mod {HASH_BUCKETS} seed 0x{route.route_id:x}"
        return f"dnat ip addr . port to {seed} map {{ {', '.join(pairs)} }}"
    pairs = [f"{i} : {m.address} . {m.port}" for i, m in enumerate(members)]
    return f"dnat ip addr . port to numgen inc mod {len(members)} map {{ {', '.join(pairs)} }}"


class _Body:
    """The definitions inside ``table inet godoxy_streams { ... }``."""

    def __init__(self, table: KernelTable) -> None:
        self.table = table
        self.every = sorted(table.routes, key=lambda r: r.route_id)
        self.routes = [r for r in self.every if r.members]  # memberless: only their state
        self.acl_sets = self._acl_sets()

    def stateful(self) -> TableObjects:
        """The objects whose state an update keeps: counters, dynamic sets, timeouts."""
        counters = {counter_name(r.route_id, k) for r in self.every for k in COUNTER_KINDS}
        sets: set[str] = set()
        for r in self.every:
            if r.max_connections is not None:
                sets.add(f"r{r.route_id}_count")
            if r.per_source_connections is not None:
                sets.add(f"r{r.route_id}_psrc4")
            if (name := _rate_set(r)) is not None:
                sets.add(name)
        timeouts = {t for r in self.every if (t := timeout_name(r)) is not None}
        return TableObjects(
            sets=frozenset(sets), counters=frozenset(counters), timeouts=frozenset(timeouts)
        )

    def lines(self) -> list[str]:
        out: list[str] = []
        for name in sorted(self.stateful().counters):
            out += [f"\tcounter {name} {{", "\t}"]
        out += self._timeouts() + self._static_sets() + self._dynamic_sets()
        if self.every:
            out += self._counter_maps()
        for route in self.routes:
            out += [f"\tchain r{route.route_id} {{", *self._route_rules(route), "\t}"]
        out += self._prerouting()
        if self.every:
            out += self._forward()
        return out

    def _timeouts(self) -> list[str]:
        out: list[str] = []
        policies = {name: r for r in self.every if (name := timeout_name(r)) is not None}
        for name in sorted(policies):
            route = policies[name]
            if route.protocol == "udp":
                secs = whole_seconds(route.udp_timeout or 0)
                policy = f"unreplied : {secs}, replied : {secs}"
            else:
                policy = f"established : {whole_seconds(route.idle_timeout or 0)}"
            out += [f"\tct timeout {name} {{", "\t\tprotocol " + route.protocol, "\t\tl3proto ip"]
            out += [f"\t\tpolicy = {{ {policy} }}", "\t}"]
        return out

    def _acl_sets(self) -> list[tuple[str, tuple[str, ...]]]:
        t = self.table
        named = [
            ("g_allow4", t.allow),
            ("g_deny4", t.deny),
            ("userspace_src4", t.userspace_sources),
        ]
        for r in self.routes:
            named += [(f"r{r.route_id}_allow4", r.allow), (f"r{r.route_id}_deny4", r.deny)]
        return [(name, entries) for name, entries in named if entries]

    def _static_sets(self) -> list[str]:
        out: list[str] = []
        for name, entries in self.acl_sets:
            nets = v4_networks(entries)
            out += [f"\tset {name} {{", "\t\ttype ipv4_addr", "\t\tflags interval"]
            out += ([f"\t\t{_elements(nets)}"] if nets else []) + ["\t}"]
        return out

    def _dynamic_sets(self) -> list[str]:
        out: list[str] = []
        for name in sorted(self.stateful().sets):
            kind = "inet_service" if name.endswith("_count") else "ipv4_addr"
            flags = "dynamic,timeout" if "_rate4_" in name else "dynamic"
            out += [f"\tset {name} {{", f"\t\ttype {kind}", f"\t\tsize {DYNAMIC_SET_SIZE}"]
            out.append(f"\t\tflags {flags}")
            if "_rate4_" in name:
                out.append(f"\t\ttimeout {name.rsplit('_t', 1)[1]}s")
            out.append("\t}")
        return out

    def _counter_maps(self) -> list[str]:
        out: list[str] = []
        for direction in ("c2u", "u2c"):
            pairs = [
                f'0x{r.mark:08x} : "{counter_name(r.route_id, direction)}"' for r in self.every
            ]
            out += [f"\tmap ctr_{direction} {{", "\t\ttype mark : counter"]
            out += [f"\t\t{_elements(pairs)}", "\t}"]
        return out

    def _route_rules(self, route: KernelRoute) -> list[str]:
        rid = route.route_id
        refused = f'counter name "{counter_name(rid, "refused")}"'
        refuse = (
            f"{refused} reject with tcp reset" if route.protocol == "tcp" else f"{refused} drop"
        )
        present = {name for name, _ in self.acl_sets}
        out = []
        for name in _acl_names(rid):
            if name in present:
                test = "!= " if name.endswith("allow4") else ""
                out.append(f"\t\tip saddr {test}@{name} {refuse}")
        if (rate_set := _rate_set(route)) is not None:
            limit = f"limit rate over {rate_text(route.rate or 1)} burst {route.burst} packets"
            out.append(f"\t\tupdate @{rate_set} {{ ip saddr {limit} }} {refuse}")
        if route.per_source_connections is not None:
            over = f"ct count over {route.per_source_connections}"
            out.append(f"\t\tadd @r{rid}_psrc4 {{ ip saddr {over} }} {refuse}")
        if route.max_connections is not None:
            over = f"ct count over {route.max_connections}"
            out.append(f"\t\tadd @r{rid}_count {{ th dport {over} }} {refuse}")
        if (timeout := timeout_name(route)) is not None:
            out.append(f'\t\tct timeout set "{timeout}"')
        conns = f'counter name "{counter_name(rid, "conns")}"'
        mark = f"ct mark set 0x{route.mark:08x}"
        comment = f'comment "{route.label()}"'
        out.append(f"\t\tmeta l4proto {route.protocol} {mark} {conns} {_dnat(route)} {comment}")
        return out

    def _prerouting(self) -> list[str]:
        t = self.table
        out = [
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat - 5; policy accept;",
        ]
        out += [f'\t\tiifname "{name}" return' for name in t.skip_ifnames]
        if t.userspace_sources:
            out.append("\t\tip saddr @userspace_src4 return")
        bound = [r for r in self.routes if not r.wildcard]
        if bound:
            pairs = [
                f"{r.bind} . {r.protocol} . {r.listen_port} : jump r{r.route_id}" for r in bound
            ]
            out.append(f"\t\tip daddr . meta l4proto . th dport vmap {{ {', '.join(pairs)} }}")
        wild = [r for r in self.routes if r.wildcard]
        wild_ports = {(r.protocol, r.listen_port) for r in wild}
        shadowed = sorted(
            f"{s.bind} . {s.protocol} . {s.port}"
            for s in set(t.userspace_sockets)
            if (s.protocol, s.port) in wild_ports
        )
        if shadowed:
            out.append(f"\t\tip daddr . meta l4proto . th dport {{ {', '.join(shadowed)} }} return")
        if wild:
            pairs = [f"{r.protocol} . {r.listen_port} : jump r{r.route_id}" for r in wild]
            dispatch = f"meta l4proto . th dport vmap {{ {', '.join(pairs)} }}"
            out.append(f"\t\tmeta nfproto ipv4 fib daddr type local {dispatch}")
        return out + ["\t}"]

    def _forward(self) -> list[str]:
        ours = f"ct mark & 0x{MARK_MASK:08x} == 0x{MARK_BASE:08x}"
        return [
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter - 5; policy accept;",
            f"\t\t{ours} ct direction original counter name ct mark map @ctr_c2u",
            f"\t\t{ours} ct direction reply counter name ct mark map @ctr_u2c",
            "\t}",
        ]


def _acl_names(route_id: int) -> tuple[str, ...]:
    """The ACL sets a route's chain checks, in order: global deny, global allow, its own."""
    return ("g_deny4", "g_allow4", f"r{route_id}_deny4", f"r{route_id}_allow4")
