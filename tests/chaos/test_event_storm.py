"""An event storm from the Docker engine: pairs of containers claiming one port each, all
started at once, their holders restarted at once (so the ports change hands while the
engine's events pile up), then removed. After each step, every port is served by exactly one
container of its pair and the other one is reported as a conflict; the daemon lives on, its
log all log lines. Bounded: ``PAIRS`` ports, ``ROUNDS`` rounds of restarts."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.chaos.kit import LOCAL, log_lines
from tests.daemon_kit import DaemonProcess
from tests.docker.conftest import daemon as daemon  # noqa: F401  (the kit's fixtures)
from tests.docker.conftest import kit_sweep as kit_sweep  # noqa: F401
from tests.docker.conftest import make_network as make_network  # noqa: F401
from tests.docker.conftest import ns as ns  # noqa: F401
from tests.docker.conftest import run_container as run_container  # noqa: F401
from tests.docker.conftest import test_image as test_image  # noqa: F401
from tests.docker.kit import whoami_tcp
from tests.helpers import eventually, free_port

PAIRS = 3
ROUNDS = 2
SETTLE = 20.0  # seconds the daemon has to settle after each step of the storm


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def settled(d: DaemonProcess, pairs: dict[int, dict[str, str]]) -> dict[int, str] | None:
    """Each port's holder (a container name) once every port is served by one container of
    its pair (``pairs``: port -> container name -> its tag) and the daemon reports the other
    one, if still there, as a conflict."""
    routes = d.routes()["routes"]
    holders = {}
    for port, pair in pairs.items():
        running = [r["container"] for r in routes if r["state"] == "running"
                   and r["listen_port"] == port]  # fmt: skip
        conflicts = [r for r in routes if r["state"] == "conflict" and r["alias"] == f"p{port}"]
        if len(running) != 1 or running[0] not in pair or len(conflicts) != len(pair) - 1:
            return None
        try:
            if whoami_tcp(LOCAL, port, timeout=2) != pair[running[0]]:
                return None
        except OSError:
            return None
        holders[port] = running[0]
    return holders


def test_pairs_claiming_one_port_settle_after_a_storm(
    daemon: Callable[..., DaemonProcess],  # noqa: F811
    ns: str,  # noqa: F811
    run_container: Any,  # noqa: F811
) -> None:
    d = daemon()
    claims = [(free_port(), side) for _ in range(PAIRS) for side in "ab"]

    def claimant(port: int, tag: str) -> Callable[[], Any]:
        labels = {f"{ns}.aliases": f"p{port}", f"{ns}.p{port}.port": f"{port}:7"}
        return lambda: run_container(labels=labels, command=["-t", "7", "--tag", tag])

    # pairs share a port: claims are (a0, b0), (a1, b1), ... with the same port per pair
    claims = [(claims[2 * (i // 2)][0], side) for i, (_, side) in enumerate(claims)]
    started = all_at_once([claimant(port, f"{port}-{side}") for port, side in claims])
    containers = {c.name: c for c in started}
    pairs: dict[int, dict[str, str]] = {}
    for container, (port, side) in zip(started, claims, strict=True):
        pairs.setdefault(port, {})[container.name] = f"{port}-{side}"

    holders = eventually(lambda: settled(d, pairs), timeout=SETTLE, what="each port one holder")
    for round_ in range(ROUNDS):  # the holders go and come back: the ports may change hands
        all_at_once([lambda c=containers[h]: c.restart(timeout=0) for h in holders.values()])
        before, holders = (
            holders,
            eventually(
                lambda: settled(d, pairs), timeout=SETTLE, what=f"settled after round {round_ + 1}"
            ),
        )
        moved = sum(before[port] != holders[port] for port in holders)
        print(f"round {round_ + 1}: {moved} of {PAIRS} ports changed hands")
    all_at_once([lambda c=containers[h]: c.remove(force=True) for h in holders.values()])
    for port, holder in holders.items():
        del pairs[port][holder]
    last = eventually(lambda: settled(d, pairs), timeout=SETTLE, what="the others took over")
    assert not set(last.values()) & set(holders.values())
    assert d.alive
    log_lines(d.log(), "text")
