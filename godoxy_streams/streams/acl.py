"""Client address access lists: allow/deny lists of IPs and CIDRs, precomputed into sorted
integer ranges per address family so that ``Acl.allows`` costs one parse and one bisect.

Semantics: deny beats allow; a non-empty allow list denies everything it does not cover (of
either family); two empty lists allow everything. IPv4-mapped IPv6 clients
(``::ffff:10.0.0.1``, as a dual-stack socket reports IPv4 peers) are checked as the IPv4
address they carry, and rules written inside ``::ffff:0:0/96`` become IPv4 rules, so a client
is judged the same whichever socket it reached. Other IPv6 rules (even ``::/0``) match native
IPv6 clients only. ``Acl.combine`` intersects two lists: a client must pass both. No I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable

Range = tuple[int, int]  # inclusive integer bounds

_FULL = {4: [(0, 2**32 - 1)], 6: [(0, 2**128 - 1)]}
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_MAPPED_BASE = int(_MAPPED.network_address)
_MAPPED_PREFIX = _MAPPED.network_address.packed[:12]


def _entry_range(entry: str) -> tuple[int, Range]:
    """(family, range) of one rule; an IPv4-mapped IPv6 rule becomes an IPv4 one."""
    text = entry.strip() if isinstance(entry, str) else ""
    try:
        if not text or "%" in text:
            raise ValueError
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"invalid ACL entry {entry!r}: expected an IP address or CIDR "
            "(e.g. 192.168.1.0/24, 10.0.0.1 or fd00::/8)"
        ) from None
    low, high = int(network.network_address), int(network.broadcast_address)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        return 4, (low - _MAPPED_BASE, high - _MAPPED_BASE)
    return network.version, (low, high)


def _merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint, non-adjacent ranges covering the same addresses."""
    out: list[Range] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _subtract(keep: list[Range], remove: list[Range]) -> list[Range]:
    """``keep`` minus ``remove`` (both merged)."""
    out: list[Range] = []
    for low, high in keep:
        for r_low, r_high in remove:
            if r_high < low or r_low > high:
                continue
            if r_low > low:
                out.append((low, r_low - 1))
            low = r_high + 1
            if low > high:
                break
        if low <= high:
            out.append((low, high))
    return out


def _intersect(a: list[Range], b: list[Range]) -> list[Range]:
    """The addresses in both ``a`` and ``b`` (both merged)."""
    out: list[Range] = []
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def client_key(ip: str) -> tuple[int, int] | None:
    """(family, integer) of a client address, IPv4-mapped IPv6 unmapped and any ``%scope``
    dropped; None if ``ip`` is not an IP address."""
    try:
        if ":" in ip:
            packed = socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])
            if packed[:12] == _MAPPED_PREFIX:
                return 4, int.from_bytes(packed[12:], "big")
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, ValueError, TypeError):
        return None


class Acl:
    """An access list of client addresses; see the module docstring for its semantics.

    ``allow``/``deny`` are the entries it was built from (empty for a combined list,
    whose ``parts`` are the lists it combines)."""

    __slots__ = ("allow", "deny", "_open", "_starts", "_ends", "_parts")

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        allowed: dict[int, list[Range]] = {4: [], 6: []}
        denied: dict[int, list[Range]] = {4: [], 6: []}
        for entries, table in ((self.allow, allowed), (self.deny, denied)):
            for entry in entries:
                family, span = _entry_range(entry)
                table[family].append(span)
        permitted = {
            family: _subtract(
                _merge(allowed[family]) if self.allow else _FULL[family], _merge(denied[family])
            )
            for family in (4, 6)
        }
        self._parts: tuple[Acl, ...] = (self,)
        self._set(permitted)

    def _set(self, permitted: dict[int, list[Range]]) -> None:
        self._open = all(permitted[f] == _FULL[f] for f in (4, 6))
        self._starts = {f: [low for low, _ in permitted[f]] for f in (4, 6)}
        self._ends = {f: [high for _, high in permitted[f]] for f in (4, 6)}

    def _permitted(self) -> dict[int, list[Range]]:
        return {f: list(zip(self._starts[f], self._ends[f], strict=True)) for f in (4, 6)}

    @property
    def is_open(self) -> bool:
        """Whether every client passes (callers may skip the check)."""
        return self._open

    def allows(self, ip: str) -> bool:
        """Whether a client at ``ip`` may connect. An unparsable address is refused."""
        if self._open:
            return True
        key = client_key(ip)
        if key is None:
            return False
        family, number = key
        index = bisect_right(self._starts[family], number) - 1
        return index >= 0 and number <= self._ends[family][index]

    @classmethod
    def combine(cls, global_acl: Acl | None, route_acl: Acl | None) -> Acl:
        """An ACL a client passes only if it passes both (a route can only narrow the
        global list). None stands for an open list."""
        first, second = global_acl or cls(), route_acl or cls()
        combined = cls()
        a, b = first._permitted(), second._permitted()
        combined._set({f: _intersect(a[f], b[f]) for f in (4, 6)})
        combined._parts = tuple(p for p in first._parts + second._parts if not p._open)
        return combined

    @property
    def parts(self) -> tuple[Acl, ...]:
        """The lists this one was combined from (itself if it was not combined)."""
        return self._parts

    def __repr__(self) -> str:
        if self._parts != (self,):
            return "Acl.combine(" + ", ".join(repr(p) for p in self._parts) + ")"
        return f"Acl(allow={list(self.allow)!r}, deny={list(self.deny)!r})"
