"""Sleep and wake on connect, end to end: the real daemon, real containers, traffic through
127.0.0.1. Idle containers are stopped or paused and keep their listeners; the first client
wakes them and its bytes arrive intact; many clients cause one start; failed wakes end the
waiting clients within wake_timeout; depends_on containers start first; a denied client
starts nothing."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from docker.models.containers import Container

from tests.daemon_kit import DaemonProcess
from tests.docker.kit import HEALTH_FILE, file_healthcheck, kit_labels, unique_name, whoami_tcp
from tests.helpers import eventually, exchange_or_reset, free_port, tcp_exchange

LOCAL = "127.0.0.1"
Daemon = Callable[..., DaemonProcess]
SETTLE = 90.0  # seconds for a container to go to sleep (a loaded engine stops slowly)


def metrics(d: DaemonProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.api_port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def status(box: Container) -> str:
    box.reload()
    return str(box.status)


def route_state(d: DaemonProcess, alias: str, scheme: str | None = None) -> str | None:
    row = d.route(alias, scheme)
    return None if row is None else str(row["state"])


def sleeper(d: DaemonProcess, name: str) -> dict[str, Any]:
    return next(s for s in d.routes()["sleepers"] if s["name"] == name)


def asleep(d: DaemonProcess, box: Container, alias: str, states: tuple[str, ...]) -> None:
    """Wait until the daemon put ``box`` to sleep (and says so) and its route is sleeping."""

    def slept() -> bool:
        if status(box) not in states or route_state(d, alias) != "sleeping":
            return False
        row = sleeper(d, box.name)
        return row["state"] == "asleep" and row["sleeps"] >= 1

    eventually(slept, SETTLE, interval=0.2, what=f"{box.name} asleep ({'/'.join(states)})")


def starts(client: Any, box: Container, since: float) -> int:
    """How many times the engine started or unpaused ``box`` since ``since`` (time.time())."""
    filters = {"container": box.id, "event": ["start", "unpause"]}
    until = int(time.time()) + 1
    events = client.api.events(since=int(since), until=until, filters=filters, decode=True)
    return sum(1 for e in events if e["timeNano"] >= since * 1e9)


def echo_labels(ns: str, port: int, **extra: str) -> dict[str, str]:
    """Labels of a TCP echo route on ``port`` that sleeps after 1 s idle; ``extra`` adds
    container-level labels (``stop_method="pause"`` -> ``<ns>.stop_method: pause``)."""
    labels = {
        f"{ns}.echo.port": f"{port}:7",
        f"{ns}.idle_timeout": "1s",
        f"{ns}.stop_timeout": "2s",
    }
    return labels | {f"{ns}.{key}": value for key, value in extra.items()}


def sleeping_route(d: DaemonProcess) -> None:
    eventually(lambda: route_state(d, "echo") == "sleeping", 20, what="a sleeping route")


def created(
    run_container: Any, labels: dict[str, str], command: list[str], **kwargs: Any
) -> Container:
    """A container created but never started (state "created": it counts as asleep)."""
    box = run_container.client.containers.create(
        run_container.image, command, name=unique_name("sleep"), labels=kit_labels(labels), **kwargs
    )
    run_container.created.append(box)
    return box


def exchange_during_wake(port: int, payload: bytes, timeout: float = 60.0) -> bytes:
    """Connect to a sleeping route and send at once (the bytes wait while it wakes); then read
    the echo of every byte."""
    return tcp_exchange(LOCAL, port, payload, timeout)


@pytest.mark.parametrize("method", ["stop", "pause"])
def test_tcp_route_sleeps_when_idle_and_the_first_client_wakes_it(
    daemon: Daemon, run_container: Any, ns: str, method: str
) -> None:
    port = free_port()
    d = daemon()
    box = run_container(labels=echo_labels(ns, port, stop_method=method), command=["--tag", "z"])
    eventually(lambda: route_state(d, "echo") == "running", 20, what="route (a connect would wake)")
    asleep(d, box, "echo", ("exited",) if method == "stop" else ("paused",))
    assert d.route("echo")["listen_port"] == port  # type: ignore[index]  # still listening
    row = sleeper(d, box.name)
    assert row["state"] == "asleep" and row["sleeps"] == 1
    assert 'state="sleeping"} 1.0' in metrics(d) and "container_awake{" in metrics(d)

    payload = b"".join(b"line %06d of the bytes sent during the wake\n" % i for i in range(4000))
    assert exchange_during_wake(port, payload) == payload
    assert status(box) == "running"
    eventually(lambda: route_state(d, "echo") == "running", 10, what="route running again")
    row = sleeper(d, box.name)
    assert row["wakes"] == 1 and row["wake_failures"] == 0
    status_code, timeline = d.get("/api/events?kind=sleep,wake")
    kinds = [e["kind"] for e in timeline["events"] if box.name in e["message"]]
    assert status_code == 200 and kinds[:2] == ["sleep", "wake"]
    assert all(e["alias"] == "echo" for e in timeline["events"])  # on the container's route
    verb = {"stop": "stopping", "pause": "pausing"}[method]
    assert f"container {box.name} idle for 1s: {verb} it" in d.log()


@pytest.mark.parametrize("method", ["stop", "pause"])
def test_udp_route_sleeps_and_the_first_datagrams_wake_it(
    daemon: Daemon, run_container: Any, ns: str, method: str
) -> None:
    port = free_port("udp")
    d = daemon()
    labels = {
        f"{ns}.dns.scheme": "udp",
        f"{ns}.dns.port": f"{port}:7",
        f"{ns}.dns.udp_timeout": "1s",
        f"{ns}.dns.healthcheck.send": "ping",  # the wake waits until this is answered
        f"{ns}.idle_timeout": "1s",
        f"{ns}.stop_timeout": "2s",
        f"{ns}.stop_method": method,
    }
    box = run_container(labels=labels, command=["-u", "7"])
    asleep(d, box, "dns", ("exited",) if method == "stop" else ("paused",))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(60)
        client.connect((LOCAL, port))
        sent = [b"datagram %d sent while it wakes" % i for i in range(10)]
        for data in sent:
            client.send(data)
        assert [client.recv(2048) for _ in sent] == sent  # all of them, in order
    assert status(box) == "running" and sleeper(d, box.name)["wakes"] == 1


def test_fifty_clients_at_once_cause_one_start(
    daemon: Daemon, run_container: Any, ns: str, docker_client: Any
) -> None:
    port = free_port()
    d = daemon()
    box = run_container(labels=echo_labels(ns, port))
    asleep(d, box, "echo", ("exited",))
    since = time.time()
    replies: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            replies[i] = tcp_exchange(LOCAL, port, b"client %d\n" % i * 50, timeout=60)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors[:3]
    assert replies == {i: b"client %d\n" % i * 50 for i in range(50)}
    assert starts(docker_client, box, since) == 1
    assert sleeper(d, box.name)["wakes"] == 1


def ended_within(port: int, seconds: float) -> float:
    """Connect, send, and return how long until the connection ended with no reply."""
    started = time.monotonic()
    with socket.create_connection((LOCAL, port), timeout=seconds + 10) as conn:
        conn.sendall(b"anyone there?\n")
        try:
            assert conn.recv(100) == b""
        except ConnectionResetError:
            pass
    return time.monotonic() - started


def test_a_container_that_exits_during_the_wake_ends_the_waiting_clients(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = echo_labels(ns, port, wake_timeout="20s")
    box = created(run_container, labels, ["--no-such-flag"])  # exits at once, code 2
    sleeping_route(d)
    took = ended_within(port, 20)
    assert took < 20, f"the client waited {took:.1f}s, past wake_timeout"
    assert "the container stopped while it woke: exited with code 2" in d.log()
    row = sleeper(d, box.name)
    assert row["wake_failures"] == 1 and row["clients_failed"] == 1
    assert route_state(d, "echo") == "sleeping"


def test_a_container_that_never_becomes_healthy_ends_the_waiting_clients(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = echo_labels(ns, port, wake_timeout="10s")
    check = file_healthcheck("/tmp/never", interval=0.2)
    box = created(run_container, labels, ["--health-file", HEALTH_FILE], healthcheck=check)
    sleeping_route(d)
    took = ended_within(port, 10)
    assert took < 10 + 2, f"the client waited {took:.1f}s"  # wake_timeout, and the close
    assert "not ready within 10s (Docker health" in d.log()
    assert sleeper(d, box.name)["clients_failed"] == 1


def test_a_start_that_fails_ends_the_waiting_clients_with_the_engines_reason(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    created(run_container, echo_labels(ns, port), [], entrypoint=["/no/such/binary"])
    sleeping_route(d)
    ended_within(port, 30)
    d.wait_for_log("the engine could not start it")
    assert "no such file or directory" in d.log().lower()


def test_dependencies_start_first_and_stop_with_it(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    db = created(
        run_container,
        {},
        ["--health-file", HEALTH_FILE],
        healthcheck=file_healthcheck(interval=0.2),
    )
    app = created(run_container, echo_labels(ns, port, depends_on=f"{db.name}:service_healthy"), [])
    sleeping_route(d)
    assert exchange_during_wake(port, b"db first\n") == b"db first\n"
    db.reload()
    app.reload()
    assert db.attrs["State"]["StartedAt"] < app.attrs["State"]["StartedAt"]
    assert db.attrs["State"]["Health"]["Status"] == "healthy"
    asleep(d, app, "echo", ("exited",))
    eventually(lambda: status(db) == "exited", SETTLE, what="the dependency stopped with it")


def test_a_denied_client_never_starts_anything(
    daemon: Daemon, run_container: Any, ns: str, docker_client: Any
) -> None:
    port = free_port()
    d = daemon()
    labels = echo_labels(ns, port) | {f"{ns}.echo.acl.allow": "127.0.0.2"}
    box = created(run_container, labels, [])
    sleeping_route(d)
    since = time.time()
    assert exchange_or_reset(port, b"let me in\n") == b""  # closed or reset, never relayed
    assert status(box) == "created" and starts(docker_client, box, since) == 0
    assert sleeper(d, box.name)["wakes"] == 0


def test_a_pool_wakes_one_sleeper_and_takes_turns(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = echo_labels(ns, port) | {f"{ns}.echo.load_balance.mode": "round_robin"}
    a = run_container(labels=labels, command=["--tag", "a"])
    b = run_container(labels=labels, command=["--tag", "b"])
    asleep(d, a, "echo", ("exited",))
    asleep(d, b, "echo", ("exited",))

    first = whoami_tcp(LOCAL, port, timeout=60)  # all asleep: it wakes one of them
    woken, other = (a, b) if first == "a" else (b, a)
    assert first in ("a", "b") and status(other) == "exited"
    assert [whoami_tcp(LOCAL, port) for _ in range(4)] == [first] * 4  # the sleeper waits
    assert status(other) == "exited" and sleeper(d, other.name)["wakes"] == 0

    asleep(d, woken, "echo", ("exited",))
    assert whoami_tcp(LOCAL, port, timeout=60) == ("b" if first == "a" else "a")  # in turn
