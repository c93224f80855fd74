"""Health and replicas end to end: compose replicas and ``load_balance`` pools behind one port,
a replica stopped under load, and Docker HEALTHCHECK gating; real engine, real daemon."""

from __future__ import annotations

import collections
import threading
import time
import urllib.request
from typing import Any

from tests.docker.conftest import Daemon
from tests.docker.kit import (
    HEALTH_FILE,
    echo_exec,
    file_healthcheck,
    wait_health,
    whoami_tcp,
    whoami_udp,
)
from tests.helpers import eventually, free_port, tcp_connectable

LOCAL = "127.0.0.1"


def replica_labels(ns: str, port: int, project: str) -> dict[str, str]:
    return {
        f"{ns}.aliases": "echo",
        f"{ns}.echo.port": f"{port}:7",
        "com.docker.compose.project": project,
        "com.docker.compose.service": "echo",
    }


def pool_labels(ns: str, port: int, mode: str, **healthcheck: str) -> dict[str, str]:
    """Labels of a TCP route "echo" on ``port`` -> 7 that pools by ``mode``."""
    labels = {
        f"{ns}.aliases": "echo",
        f"{ns}.echo.port": f"{port}:7",
        f"{ns}.echo.load_balance.mode": mode,
    }
    labels.update({f"{ns}.echo.healthcheck.{k}": v for k, v in healthcheck.items()})
    return labels


def start_replicas(run_container: Any, ns: str, port: int, count: int) -> list[Any]:
    """``count`` replicas of one compose service (labels set by hand), tagged r0, r1, ...;
    like a well-behaved service, each serves on for a second after SIGTERM."""
    return [
        run_container(
            labels=replica_labels(ns, port, ns), command=["--tag", f"r{i}", "--grace", "1"]
        )
        for i in range(count)
    ]


def turned_away(port: int) -> bool:
    """A connection that is accepted, then closed or reset without a reply."""
    try:
        return whoami_tcp(LOCAL, port, timeout=3) == ""
    except ConnectionError:
        return True


def members_of(d: Any, alias: str) -> list[dict[str, Any]]:
    route = d.route(alias)
    return list(route["members"]) if route and route["state"] in ("running", "unhealthy") else []


def member_state(d: Any, alias: str, container: str) -> str | None:
    return next((m["state"] for m in members_of(d, alias) if m["container"] == container), None)


def healthy_members(d: Any, alias: str) -> set[str]:
    return {m["container"] for m in members_of(d, alias) if m["state"] == "healthy"}


def test_three_replicas_share_one_port_evenly(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port()
    d = daemon()
    boxes = start_replicas(run_container, ns, port, 3)
    names = {box.name for box in boxes}
    eventually(lambda: healthy_members(d, "echo") == names, what="three healthy members")
    route = d.route("echo")
    assert route is not None and route["load_balance"] == "round_robin"
    counts = collections.Counter(whoami_tcp(LOCAL, port) for _ in range(60))
    assert set(counts) == {"r0", "r1", "r2"}
    assert all(15 <= n <= 25 for n in counts.values()), counts
    totals = [m["total"] for m in members_of(d, "echo")]
    assert sum(totals) >= 60 and all(t >= 15 for t in totals), totals
    assert "members=" in d.log()


def test_stopping_a_replica_fails_no_client(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port()
    d = daemon()
    boxes = start_replicas(run_container, ns, port, 3)
    eventually(lambda: len(healthy_members(d, "echo")) == 3, what="three members")
    failures: list[str] = []
    seen: list[tuple[float, str]] = []  # (when the connection began, the replica's tag)
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and len(seen) < 5000:
            began = time.monotonic()
            try:
                tag = whoami_tcp(LOCAL, port, timeout=5)
            except OSError as exc:
                failures.append(repr(exc))
            else:
                (seen if tag else failures).append((began, tag))  # "" = closed with no reply

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        eventually(lambda: len(seen) >= 100, what="traffic before the stop")
        boxes[1].kill(signal="SIGTERM")  # what `docker stop` sends first
        eventually(lambda: len(members_of(d, "echo")) == 2, timeout=15, what="the member removed")
        removed = time.monotonic()
        boxes[1].reload()
        assert boxes[1].status == "running"  # out of the pool while it still serves
        after = len(seen)
        eventually(lambda: len(seen) >= after + 100, what="traffic after the stop")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert failures == []
    assert {tag for began, tag in seen if began > removed} == {"r0", "r2"}
    assert tcp_connectable(LOCAL, port)


def test_unhealthy_replica_gets_no_traffic_until_healthy(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = pool_labels(ns, port, "least_conn")
    plain = run_container(labels=labels, command=["--tag", "plain"])
    checked = run_container(
        labels=labels,
        command=["--tag", "checked", "--health-file", HEALTH_FILE],
        healthcheck=file_healthcheck(),
    )
    wait_health(checked, "healthy")
    both = {plain.name, checked.name}
    eventually(lambda: healthy_members(d, "echo") == both, what="both members healthy")
    assert {whoami_tcp(LOCAL, port) for _ in range(10)} == {"plain", "checked"}

    assert echo_exec(checked, "rm", HEALTH_FILE) == 0
    wait_health(checked, "unhealthy")
    eventually(lambda: healthy_members(d, "echo") == {plain.name}, what="checked left the pool")
    member = next(m for m in members_of(d, "echo") if m["container"] == checked.name)
    assert member["state"] == "unhealthy" and member["docker_health"] == "unhealthy"
    assert {whoami_tcp(LOCAL, port) for _ in range(20)} == {"plain"}

    assert echo_exec(checked, "touch", HEALTH_FILE) == 0
    wait_health(checked, "healthy")
    eventually(lambda: healthy_members(d, "echo") == both, what="checked back in the pool")
    assert "checked" in {whoami_tcp(LOCAL, port) for _ in range(10)}


def test_single_route_waits_for_docker_health(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port()
    d = daemon()
    labels = {f"{ns}.aliases": "echo", f"{ns}.echo.port": f"{port}:7"}
    box = run_container(
        labels=labels,
        command=["--tag", "solo", "--health-file", "/nowhere"],
        healthcheck=file_healthcheck(),
    )
    wait_health(box, "unhealthy")
    eventually(lambda: (d.route("echo") or {}).get("state") == "unhealthy", what="unhealthy")
    for _ in range(3):
        assert turned_away(port)
    route = d.route("echo")
    assert route is not None and route["error"] == "no healthy upstream"
    assert echo_exec(box, "touch", HEALTH_FILE) == 0
    wait_health(box, "healthy")
    eventually(lambda: (d.route("echo") or {}).get("state") == "running", what="running again")
    assert whoami_tcp(LOCAL, port) == "solo"
    url = f"http://127.0.0.1:{d.api_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        metrics = response.read().decode()
    no_upstream = [
        line for line in metrics.splitlines() if line.startswith("godoxy_streams_no_upstream_total")
    ]
    assert no_upstream and no_upstream[0].endswith(" 3.0"), no_upstream
    assert 'godoxy_streams_upstream_up{alias="echo"' in metrics


def test_active_probes_take_a_dead_port_out_and_failover_hides_it(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = pool_labels(ns, port, "round_robin", interval="200ms", timeout="1s", retries="2")
    live = run_container(labels=labels, command=["--tag", "live"])
    deaf = run_container(labels=labels, command=["--tag", "deaf", "-t", "8", "-u", "8"])
    eventually(lambda: len(members_of(d, "echo")) == 2, what="two members")
    # Until the probes notice, a dial to the deaf member fails over within the connection.
    assert {whoami_tcp(LOCAL, port) for _ in range(10)} == {"live"}
    # A failed dial has it sit out ("failing"); the probes then mark it "down".
    eventually(lambda: member_state(d, "echo", deaf.name) == "down", what="the deaf member down")
    assert healthy_members(d, "echo") == {live.name}
    member = next(m for m in members_of(d, "echo") if m["container"] == deaf.name)
    assert "refused" in member["last_error"].lower()
    assert "is down" in d.log()


def test_udp_probe_with_send_and_expect(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port("udp")
    d = daemon()
    labels = {
        f"{ns}.aliases": "dns",
        f"{ns}.dns.scheme": "udp",
        f"{ns}.dns.port": f"{port}:7",
        f"{ns}.dns.load_balance.mode": "round_robin",
        f"{ns}.dns.healthcheck.interval": "200ms",
        f"{ns}.dns.healthcheck.timeout": "500ms",
        f"{ns}.dns.healthcheck.retries": "2",
        f"{ns}.dns.healthcheck.send": "whoami",
        f"{ns}.dns.healthcheck.expect": "good",
    }
    good = run_container(labels=labels, command=["--tag", "good"])
    bad = run_container(labels=labels, command=["--tag", "bad"])

    def bad_member() -> dict[str, Any] | None:
        """The bad member once it joined the pool and its probe marked it down."""
        found = [m for m in members_of(d, "dns") if m["container"] == bad.name]
        return found[0] if found and found[0]["state"] == "down" else None

    member = eventually(bad_member, what="the bad member in the pool and down")
    assert healthy_members(d, "dns") == {good.name}
    assert "unexpected reply" in member["last_error"]
    assert {whoami_udp(LOCAL, port) for _ in range(6)} == {"good"}


def test_the_images_own_stop_signal_takes_a_member_out(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = pool_labels(ns, port, "round_robin")
    plain = run_container(labels=labels, command=["--tag", "plain"])
    quits = run_container(labels=labels, command=["--tag", "quits"], stop_signal="SIGUSR1")
    eventually(lambda: len(healthy_members(d, "echo")) == 2, what="two members")
    plain.kill(signal="SIGUSR1")  # not its stop signal (and ignored by PID 1): it stays
    quits.kill(signal="SIGUSR1")  # its stop signal: out at once, although it keeps running
    eventually(lambda: healthy_members(d, "echo") == {plain.name}, what="only plain left")
    quits.reload()
    assert quits.status == "running"
    assert {whoami_tcp(LOCAL, port) for _ in range(6)} == {"plain"}
