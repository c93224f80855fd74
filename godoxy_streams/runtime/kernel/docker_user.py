"""The one rule outside our own table: an accept in Docker's ``DOCKER-USER`` chain for the
flows our table DNATed, which Docker's FORWARD policy (drop) would otherwise discard.

nftables runs every base chain on a hook; an accept in our table does not stop the drop in
Docker's ``ip filter`` table, so the accept must sit in Docker's own chain. Docker manages that
chain with ``iptables`` (nft or legacy flavour), and a rule written there with ``nft`` would
be unreadable to it, so this module uses the same ``iptables`` flavour that holds the chain:

    -m conntrack --ctstate DNAT -m connmark --mark 0x47440000/0xffff0000
    -m comment --comment godoxy-streams -j ACCEPT

It accepts only flows whose conntrack entry we DNATed and marked (both directions). ``ensure``
inserts it at the top when it is missing; a copy left by a crashed daemon is found and kept,
never duplicated (extra copies become one); ``remove`` deletes every copy. Without a
DOCKER-USER chain (Docker runs without iptables, or no Docker) there is nothing to do, and
forwarding is up to the host's own firewall.
"""

from __future__ import annotations

from .nft import KernelError, Runner, first_lines, run
from .routes import MARK_BASE, MARK_MASK

CHAIN = "DOCKER-USER"
COMMENT = "godoxy-streams"
FLAVOURS = ("iptables-nft", "iptables-legacy")
MAX_COPIES = 64  # bound on the removal loop


def rule_spec() -> list[str]:
    """Our rule's match and target, as iptables arguments after the chain name."""
    mark = f"{MARK_BASE:#010x}/{MARK_MASK:#010x}"
    return [
        *("-m", "conntrack", "--ctstate", "DNAT"),
        *("-m", "connmark", "--mark", mark),
        *("-m", "comment", "--comment", COMMENT, "-j", "ACCEPT"),
    ]


class DockerUser:
    """Our accept in ``DOCKER-USER``, in every iptables flavour that has the chain."""

    def __init__(self, runner: Runner = run, flavours: tuple[str, ...] = FLAVOURS) -> None:
        self._run = runner
        self._flavours = flavours
        self._found: list[str] | None = None

    async def _iptables(self, tool: str, *args: str) -> int:
        done = await self._run([tool, "-w", "5", *args], None)
        return done.returncode

    async def chains(self) -> list[str]:
        """The iptables flavours whose filter table has a DOCKER-USER chain (looked up once)."""
        if self._found is None:
            found = []
            for tool in self._flavours:
                try:
                    if await self._iptables(tool, "-S", CHAIN) == 0:
                        found.append(tool)
                except KernelError:
                    continue  # this flavour is not installed
            self._found = found
        return self._found

    async def copies(self, tool: str) -> int:
        """How many copies of our rule ``tool``'s DOCKER-USER chain holds."""
        done = await self._run([tool, "-w", "5", "-S", CHAIN], None)
        if done.returncode != 0:
            raise KernelError(f"{tool} -S {CHAIN}: {first_lines(done.stderr)}")
        ours = " ".join(["-A", CHAIN, *rule_spec()])  # as -S prints it back
        return sum(1 for line in done.stdout.splitlines() if line.strip() == ours)

    async def ensure(self) -> list[str]:
        """Exactly one copy of the rule in every DOCKER-USER chain; the flavours holding it.
        A single copy stays where it is (a crashed daemon's, or one an operator moved); none,
        or several, become one at the top."""
        tools = await self.chains()
        for tool in tools:
            copies = await self.copies(tool)
            if copies == 1:
                continue
            for _ in range(min(copies, MAX_COPIES)):
                await self._iptables(tool, "-D", CHAIN, *rule_spec())
            if await self._iptables(tool, "-I", CHAIN, "1", *rule_spec()) != 0:
                raise KernelError(f"{tool} -I {CHAIN} failed")
        return tools

    async def remove(self) -> int:
        """Delete every copy of the rule; how many were removed."""
        removed = 0
        for tool in await self.chains():
            for _ in range(MAX_COPIES):
                if await self._iptables(tool, "-D", CHAIN, *rule_spec()) != 0:
                    break
                removed += 1
        return removed
