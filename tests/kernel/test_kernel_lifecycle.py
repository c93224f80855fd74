"""The kernel path's life cycle on the real host: a daemon killed with SIGKILL leaves its
table and DOCKER-USER rule, and the next start replaces them (never a second table or rule);
a clean stop removes both, and flows it did not kill run on through Docker's own rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from godoxy_streams.runtime.kernel.docker_user import COMMENT
from godoxy_streams.runtime.kernel.routes import KernelRoute, KernelTable, Upstream

from ..helpers import free_port
from . import kit
from .conftest import Echo

CRASHING_DAEMON = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from godoxy_streams.runtime.kernel.path import KernelPath
    from godoxy_streams.runtime.kernel.routes import KernelRoute, KernelTable, Upstream

    bind, port, member = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    async def main() -> None:
        path = KernelPath()
        await path.start()
        route = KernelRoute(1, "tcp", bind, port, (Upstream(member, 7),))
        assert await path.apply(KernelTable(routes=(route,))) == {}
        print("applied", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def our_rules() -> int:
    return sum(text.count(COMMENT) for text in kit.docker_user_rules().values())


def our_tables() -> int:
    return sum("godoxy_streams" in line for line in kit.nft_tables())


def test_a_killed_daemons_table_and_rule_are_replaced_not_duplicated(
    client_ns: kit.ClientNamespace, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    flavours = len(kit.docker_user_rules())  # one copy of our rule in each
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_DAEMON, client_ns.host_address, str(port), address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    harness = kit.KernelHarness()
    try:
        assert done.returncode == -9 and "applied" in done.stdout, done.stderr
        assert (our_tables(), our_rules()) == (1, flavours)  # left behind by the crash
        with client_ns.connect(client_ns.host_address, port) as conn:
            conn.sendall(b"whoami\n")
            assert conn.recv(100) == b"A\n"
            harness.start()
            assert (our_tables(), our_rules()) == (1, flavours)
            assert harness.counters() == {}  # the stale routes are gone
            conn.sendall(b"still")  # the crashed daemon's flow drains on
            assert conn.recv(100) == b"still"
        route = KernelRoute(1, "tcp", client_ns.host_address, port, (Upstream(address, 7),))
        assert harness.apply(KernelTable(routes=(route,))) == {}
        assert our_tables() == 1
    finally:
        harness.stop(kill=True)
        harness.close()
    assert (our_tables(), our_rules()) == (0, 0)


def test_a_clean_stop_removes_everything_and_open_flows_run_on(
    client_ns: kit.ClientNamespace, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    before = kit.docker_user_rules()
    flavours = len(before)
    harness = kit.KernelHarness()
    try:
        harness.start()
        route = KernelRoute(1, "tcp", client_ns.host_address, port, (Upstream(address, 7),))
        harness.apply(KernelTable(routes=(route,)))
        assert our_tables() == 1 and our_rules() == flavours
        with client_ns.connect(client_ns.host_address, port) as conn:
            conn.sendall(b"whoami\n")
            assert conn.recv(100) == b"A\n"
            harness.stop(kill=False)
            assert (our_tables(), our_rules()) == (0, 0)
            assert kit.docker_user_rules() == {
                tool: "".join(line for line in text.splitlines(True) if COMMENT not in line)
                for tool, text in before.items()
            }
            conn.sendall(b"still")  # established: Docker's own rules let it through
            assert conn.recv(100) == b"still"
            assert harness.kill(1) == 1
    finally:
        harness.stop(kill=True)
        harness.close()
