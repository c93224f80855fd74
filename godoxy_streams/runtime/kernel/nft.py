"""Talk to nftables: apply a rendered script in one transaction, read the table's objects and
named counters back, delete the table, and say once whether the fast path can run here.

It runs the ``nft`` program (``nft -f -`` with the script on stdin, ``nft -j list ...`` for
JSON) through asyncio subprocesses. ``nft -f`` is one netlink batch, as atomic as libnftables'
JSON API, and needs no Python binding: PyPI has none from the netfilter project (only copies
of Debian's ctypes ``python3-nftables``, which a venv does not see). Every call is bounded in
time; a failure raises ``KernelError`` with nft's own first lines.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .routes import (
    TABLE,
    KernelRoute,
    KernelTable,
    RouteCounters,
    TableObjects,
    Upstream,
)
from .rules import render

CAP_NET_ADMIN = 12
RUN_TIMEOUT = 10.0
SCRIPT_BYTES_PER_SECOND = 20_000  # a large script gets more time (1000 routes: ~1.4 MB)
_OBJECT_KINDS = {
    "chain": "chains",
    "set": "sets",
    "map": "maps",
    "counter": "counters",
    "ct timeout": "timeouts",
}
_COUNTER_FIELDS = {
    "conns": ("connections", None),
    "refused": ("refused", None),
    "c2u": ("packets_in", "bytes_in"),
    "u2c": ("packets_out", "bytes_out"),
}


class KernelError(RuntimeError):
    """nftables (or conntrack, iptables) refused or failed; the message is theirs."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], str | None], Awaitable[Completed]]


async def run(argv: Sequence[str], stdin: str | None = None) -> Completed:
    """Run ``argv`` with ``stdin`` (text), bounded in time (RUN_TIMEOUT, more for a long
    ``stdin``); its exit code and output."""
    timeout = RUN_TIMEOUT + len(stdin or "") / SCRIPT_BYTES_PER_SECOND
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise KernelError(f"cannot run {argv[0]}: {e}") from None
    try:  # asyncio.timeout: unlike 3.11's wait_for, it never swallows a cancellation
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise KernelError(f"{argv[0]} did not finish within {timeout:.0f}s") from None
    return Completed(
        proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )


def first_lines(text: str, count: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:count] if line.strip())


def parse_objects(doc: Any) -> TableObjects:
    """The names in ``nft -j list table`` output, by kind."""
    found: dict[str, set[str]] = {field: set() for field in _OBJECT_KINDS.values()}
    for item in doc.get("nftables", []) if isinstance(doc, dict) else []:
        for kind, field in _OBJECT_KINDS.items():
            if isinstance(item, dict) and kind in item:
                found[field].add(str(item[kind]["name"]))
    return TableObjects(**{field: frozenset(names) for field, names in found.items()})


def parse_counters(doc: Any) -> dict[int, RouteCounters]:
    """Each route's counters from ``nft -j list counters table ...`` output (``r<id>_<kind>``
    names; others are ignored)."""
    values: dict[int, dict[str, int]] = {}
    for item in doc.get("nftables", []) if isinstance(doc, dict) else []:
        counter = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(counter, dict):
            continue
        head, _, kind = str(counter.get("name", "")).partition("_")
        if not head.startswith("r") or not head[1:].isdigit() or kind not in _COUNTER_FIELDS:
            continue
        packets_field, bytes_field = _COUNTER_FIELDS[kind]
        route = values.setdefault(int(head[1:]), {})
        route[packets_field] = int(counter.get("packets", 0))
        if bytes_field is not None:
            route[bytes_field] = int(counter.get("bytes", 0))
    return {route_id: RouteCounters(**fields) for route_id, fields in values.items()}


class Nftables:
    """The table ``inet godoxy_streams`` through the ``nft`` program."""

    def __init__(self, runner: Runner = run, nft: str = "nft") -> None:
        self._run = runner
        self._nft = nft

    async def apply(self, script: str, *, check: bool = False) -> None:
        """Apply ``script`` as one transaction (``check``: only validate it, change nothing)."""
        argv = [self._nft, *(["-c"] if check else []), "-f", "-"]
        done = await self._run(argv, script)
        if done.returncode != 0:
            raise KernelError(f"nft {'-c ' if check else ''}-f: {first_lines(done.stderr)}")

    async def _json(self, *args: str) -> Any | None:
        done = await self._run([self._nft, "-j", *args], None)
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise KernelError(f"nft -j {' '.join(args)}: {first_lines(done.stderr)}")
        try:
            return json.loads(done.stdout or "{}")
        except ValueError as e:
            raise KernelError(f"nft -j {' '.join(args)}: unreadable JSON ({e})") from None

    async def objects(self) -> TableObjects | None:
        """What the table holds now, or None when there is no table."""
        doc = await self._json("-t", "list", "table", *TABLE.split())  # -t: no set elements
        return None if doc is None else parse_objects(doc)

    async def counters(self) -> dict[int, RouteCounters]:
        """Every route's named counters (none when there is no table)."""
        doc = await self._json("list", "counters", "table", *TABLE.split())
        return {} if doc is None else parse_counters(doc)

    async def delete_table(self) -> None:
        """Remove the table if it exists (``table; delete table`` never fails on absence)."""
        await self.apply(f"table {TABLE}\ndelete table {TABLE}\n")


# -- availability -------------------------------------------------------------------------


def has_cap_net_admin(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process holds CAP_NET_ADMIN in its effective set."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def probe_table() -> KernelTable:
    """A table that uses every feature the renderer can emit: checking it (``nft -c``) asks
    the kernel for all of them at once."""
    pair = (Upstream("192.0.2.10", 7), Upstream("192.0.2.11", 7))
    common: dict[str, Any] = {
        "allow": ("198.18.0.0/15",),
        "deny": ("198.18.0.3",),
        "max_connections": 2,
        "per_source_connections": 2,
        "rate": 1.0,
        "burst": 2,
    }
    return KernelTable(
        routes=(
            KernelRoute(1, "tcp", "0.0.0.0", 1, pair, idle_timeout=60, **common),
            KernelRoute(2, "udp", "192.0.2.1", 1, pair, "ip_hash", udp_timeout=30, **common),
        ),
        allow=("0.0.0.0/0",),
        userspace_sources=("198.18.0.9",),
    )


async def availability(runner: Runner = run) -> str | None:
    """None when the fast path can run here, else the one reason why not."""
    missing = [tool for tool in ("nft", "conntrack") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: apt-get install nftables conntrack)"
    if not has_cap_net_admin():
        return "no CAP_NET_ADMIN (run as root, or with cap_add: [NET_ADMIN] and host networking)"
    try:
        forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    except OSError:
        forward = "?"
    if forward != "1":
        return f"net.ipv4.ip_forward is {forward}, not 1: this host does not forward packets"
    try:
        await Nftables(runner).apply(render(probe_table()), check=True)
    except KernelError as e:
        return f"the kernel lacks an nftables feature the fast path needs: {e}"
    return None
