"""The flows the kernel forwards for us, from the conntrack table: how many each route and
member holds, and ``kill`` (delete a route's entries). ``drain`` needs nothing here: a route
removed from the table keeps its conntrack entries, so its flows run on until they end.

It runs Debian's ``conntrack`` program (package conntrack); every flow of ours carries the
route's mark (``MARK_BASE | route_id``), so one ``conntrack -L -m BASE/MASK`` lists them
all. A deleted entry's next packet finds no NAT: the host answers the client with a reset and
the container's next packet is reset by the client.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .nft import KernelError, Runner, first_lines, run
from .routes import MARK_BASE, MARK_MASK, Proto, route_mark

CLOSED_TCP_STATES = frozenset({"TIME_WAIT", "CLOSE"})
"""States ``ct count`` does not count either: the connection is over."""
_DELETED = re.compile(r"(\d+) flow entries have been deleted")


@dataclass(frozen=True)
class Flow:
    """One conntrack entry of ours: its route, protocol, state, the client (address, port)
    and the member it reaches."""

    route_id: int
    protocol: str
    state: str
    client: tuple[str, int]
    member: tuple[str, int]

    @property
    def active(self) -> bool:
        return not (self.protocol == "tcp" and self.state in CLOSED_TCP_STATES)


def parse_flow(line: str) -> Flow | None:
    """A ``conntrack -L`` line as a Flow; None when it is not one of ours or not readable."""
    words = line.split()
    if len(words) < 4 or words[0] not in ("tcp", "udp"):
        return None
    fields: dict[str, list[str]] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        mark = int(fields["mark"][0])
        client = (fields["src"][0], int(fields["sport"][0]))
        member = (fields["src"][1], int(fields["sport"][1]))
    except (KeyError, IndexError, ValueError):
        return None
    if mark & MARK_MASK != MARK_BASE:
        return None
    state = words[3] if words[0] == "tcp" and "=" not in words[3] else ""
    return Flow(mark & ~MARK_MASK, words[0], state, client, member)


def parse_flows(text: str) -> list[Flow]:
    return [flow for line in text.splitlines() if (flow := parse_flow(line)) is not None]


def active_by_route(flows: list[Flow]) -> dict[int, int]:
    """Open flows per route (TCP connections not closed yet, UDP sessions not expired)."""
    return dict(Counter(f.route_id for f in flows if f.active))


def active_by_member(flows: list[Flow]) -> dict[int, dict[tuple[str, int], int]]:
    """Open flows per route and member (address, port)."""
    out: dict[int, dict[tuple[str, int], int]] = {}
    for flow in flows:
        if flow.active:
            members = out.setdefault(flow.route_id, {})
            members[flow.member] = members.get(flow.member, 0) + 1
    return out


class Conntrack:
    """Our flows in the conntrack table, through the ``conntrack`` program."""

    def __init__(self, runner: Runner = run, tool: str = "conntrack") -> None:
        self._run = runner
        self._tool = tool

    async def flows(self) -> list[Flow]:
        """Every conntrack entry that carries one of our marks."""
        done = await self._run([self._tool, "-L", "-m", f"{MARK_BASE:#x}/{MARK_MASK:#x}"], None)
        if done.returncode != 0:
            raise KernelError(f"conntrack -L: {first_lines(done.stderr)}")
        return parse_flows(done.stdout)

    async def kill(
        self, route_id: int, member: tuple[str, int] | None = None, protocol: Proto = "tcp"
    ) -> int:
        """Delete a route's entries (only those to ``member`` when given); how many went."""
        argv = [self._tool, "-D", "-m", f"{route_mark(route_id):#x}/0xffffffff"]
        if member is not None:
            argv += ["-p", protocol, "--reply-src", member[0], "--reply-port-src", str(member[1])]
        done = await self._run(argv, None)
        found = _DELETED.search(done.stderr + done.stdout)
        if found is None:
            raise KernelError(f"conntrack -D: {first_lines(done.stderr)}")
        return int(found.group(1))  # exit code 1 only says that none matched
