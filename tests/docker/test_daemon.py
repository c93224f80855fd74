"""The daemon end to end (issue "The daemon"): a real engine, real containers, the real
``godoxy-streams run`` process, traffic through 127.0.0.1 only."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon_kit import DaemonProcess
from tests.docker.engine_proxy import EngineProxy
from tests.docker.kit import whoami_tcp, whoami_udp
from tests.helpers import (
    eventually,
    exchange_or_reset,
    free_port,
    tcp_connectable,
    tcp_exchange,
    udp_exchange,
)

LOCAL = "127.0.0.1"
Daemon = Callable[..., DaemonProcess]


def closed(port: int) -> bool:
    return not tcp_connectable(LOCAL, port, timeout=0.5)


def test_container_lifecycle_opens_and_closes_ports(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    tcp_port, udp_port = free_port("tcp"), free_port("udp")
    d = daemon()
    labels = {
        f"{ns}.aliases": "echo,dns",
        f"{ns}.echo.port": f"{tcp_port}:7",
        f"{ns}.dns.scheme": "udp",
        f"{ns}.dns.port": f"{udp_port}:7",
    }
    box = run_container(labels=labels, command=["--tag", "box"])
    eventually(lambda: tcp_connectable(LOCAL, tcp_port), what="TCP listener opened")
    assert tcp_exchange(LOCAL, tcp_port, b"hello through the proxy") == b"hello through the proxy"
    assert whoami_udp(LOCAL, udp_port) == "box"
    route = d.route("echo")
    assert route is not None and route["state"] == "running" and route["listen_port"] == tcp_port

    replies: dict[int, bytes] = {}

    def client(i: int) -> None:
        replies[i] = udp_exchange(LOCAL, udp_port, f"client-{i}".encode() * 3, timeout=3)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert replies == {i: f"client-{i}".encode() * 3 for i in range(32)}

    box.stop(timeout=2)
    eventually(lambda: closed(tcp_port), what="listener closed after docker stop")
    eventually(lambda: d.route("dns") is None, what="UDP route gone after docker stop")
    box.start()
    eventually(lambda: tcp_connectable(LOCAL, tcp_port), what="listener reopened after start")
    assert whoami_tcp(LOCAL, tcp_port) == "box"
    box.remove(force=True)
    eventually(lambda: closed(tcp_port), what="listener closed after docker rm -f")
    assert d.alive


def test_paused_container_has_no_route(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port()
    daemon()
    box = run_container(labels={f"{ns}.a.port": f"{port}:7"})
    eventually(lambda: tcp_connectable(LOCAL, port), what="listener opened")
    box.pause()
    try:
        eventually(lambda: closed(port), what="listener closed while paused")
    finally:
        box.unpause()
    eventually(lambda: tcp_connectable(LOCAL, port), what="listener back after unpause")


def test_long_lived_connection_survives_other_containers(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    run_container(labels={f"{ns}.steady.port": f"{port}:7"})
    eventually(lambda: tcp_connectable(LOCAL, port), what="steady listener")
    with socket.create_connection((LOCAL, port), timeout=5) as conn:
        for i in range(20):
            other = free_port()
            box = run_container(labels={f"{ns}.churn.port": f"{other}:7"})
            eventually(lambda p=other: tcp_connectable(LOCAL, p), what=f"churn {i} listener")  # type: ignore[misc]
            box.remove(force=True)
            message = f"still here {i}\n".encode()
            conn.sendall(message)
            received = b""
            while len(received) < len(message):
                chunk = conn.recv(1024)
                assert chunk, f"connection closed after {i} churned containers"
                received += chunk
            assert received == message
    assert "route stop" not in "".join(
        line for line in d.log().splitlines() if f":{port} " in line or f":{port}\n" in line
    )


def test_bad_label_breaks_only_its_route(daemon: Daemon, run_container: Any, ns: str) -> None:
    good, other = free_port(), free_port()
    d = daemon()
    run_container(
        labels={
            f"{ns}.aliases": "good,bad",
            f"{ns}.good.port": f"{good}:7",
            f"{ns}.bad.scheme": "tcp",
            f"{ns}.bad.port": "22x",
        },
        name=None,
    )
    run_container(labels={f"{ns}.fine.port": f"{other}:7"})
    eventually(lambda: tcp_connectable(LOCAL, good) and tcp_connectable(LOCAL, other))
    errors = eventually(lambda: d.routes()["errors"], what="label error reported")
    (error,) = errors
    assert error["label"] == f"{ns}.bad.port" and error["value"] == "22x"
    assert "expected [LISTEN:]TARGET" in error["message"] and error["alias"] == "bad"
    d.wait_for_log(f'label {ns}.bad.port="22x"')
    containers = d.routes()["containers"]
    assert any("1 invalid" in c["reason"] for c in containers), containers
    assert d.alive


def test_conflict_first_keeps_port_second_takes_over(
    daemon: Daemon, run_container: Any, ns: str
) -> None:
    port = free_port()
    d = daemon()
    labels = {f"{ns}.echo.port": f"{port}:7"}
    first = run_container(labels=labels, command=["--tag", "first"])
    eventually(lambda: whoami_tcp(LOCAL, port) == "first", what="first serves")
    run_container(labels=labels, command=["--tag", "second"])
    conflict = eventually(
        lambda: next((r for r in d.routes()["routes"] if r["state"] == "conflict"), None),
        what="second reported as conflict",
    )
    assert first.name in conflict["error"] and conflict["listen_port"] is None
    assert whoami_tcp(LOCAL, port) == "first"
    first.stop(timeout=2)
    eventually(lambda: whoami_tcp(LOCAL, port) == "second", what="second took over")
    assert not any(r["state"] == "conflict" for r in d.routes()["routes"])


def test_rolling_replacement_is_a_retarget(daemon: Daemon, run_container: Any, ns: str) -> None:
    port = free_port()
    d = daemon()
    labels = {f"{ns}.svc.port": f"{port}:7"}
    old = run_container(labels=labels, command=["--tag", "old"])
    eventually(lambda: whoami_tcp(LOCAL, port) == "old")
    refused: list[str] = []
    stop = threading.Event()

    def knock() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                socket.create_connection((LOCAL, port), timeout=2).close()
            except ConnectionRefusedError as exc:
                refused.append(str(exc))
            stop.wait(0.005)

    knocker = threading.Thread(target=knock)
    knocker.start()
    try:
        run_container(labels=labels, command=["--tag", "new"])
        eventually(lambda: any(r["state"] == "conflict" for r in d.routes()["routes"]))
        old.remove(force=True)
        eventually(lambda: whoami_tcp(LOCAL, port) == "new", what="new connections reach new")
    finally:
        stop.set()
        knocker.join(timeout=10)
    assert refused == [], "the listener was closed during the replacement"
    d.wait_for_log("route retarget")


def test_engine_goes_away_and_comes_back(
    tmp_path: Path, daemon: Daemon, run_container: Any, ns: str
) -> None:
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    try:
        kept, added = free_port(), free_port()
        d = daemon("--docker", proxy.url)
        gone = run_container(labels={f"{ns}.kept.port": f"{kept}:7"}, command=["--tag", "kept"])
        eventually(lambda: whoami_tcp(LOCAL, kept) == "kept", what="route before the cut")
        proxy.cut()
        eventually(
            lambda: d.health()[1]["sources"][0]["state"] == "disconnected",
            what="daemon notices the engine is gone",
        )
        assert whoami_tcp(LOCAL, kept) == "kept", "running routes keep serving while cut"
        run_container(labels={f"{ns}.added.port": f"{added}:7"}, command=["--tag", "added"])
        gone.stop(timeout=2)
        assert closed(added)
        proxy.start()
        eventually(lambda: whoami_tcp(LOCAL, added) == "added", timeout=30, what="resync")
        eventually(lambda: closed(kept), what="stopped meanwhile -> listener closed")
        # The routes of the resync may show before the state flips (the Swarm look in between).
        eventually(
            lambda: d.health()[1]["sources"][0]["state"] == "connected", what="state connected"
        )
        assert d.log().count("Docker engine unreachable") == 1
    finally:
        proxy.cut()


def test_daemon_starts_without_engine_and_serves_static_routes(
    tmp_path: Path, daemon: Daemon, run_container: Any, ns: str
) -> None:
    box = run_container(command=["--tag", "static"])
    from tests.docker.kit import container_ip

    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(
        f"routes:\n  st: {{scheme: tcp, port: '{port}:7', host: {container_ip(box)}}}\n"
    )
    d = daemon("--docker", f"unix://{tmp_path}/missing.sock", "--routes", str(routes))
    assert whoami_tcp(LOCAL, port) == "static"
    status, body = d.health()
    assert status == 200 and body["sources"][0]["state"] == "disconnected"
    out = subprocess.run(
        [sys.executable, "-m", "godoxy_streams", "routes", "--api", f"127.0.0.1:{d.api_port}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert "st" in out.stdout and f"{port}" in out.stdout and "running" in out.stdout
    assert d.log().count("Docker engine unreachable") == 1


def test_address_change_is_followed_by_retarget(
    daemon: Daemon, run_container: Any, make_network: Any, ns: str
) -> None:
    from tests.docker.kit import container_ip

    first, second = make_network(), make_network()
    port = free_port()
    d = daemon()
    box = run_container(
        labels={f"{ns}.moving.port": f"{port}:7"}, command=["--tag", "mover"], network=first.name
    )
    eventually(lambda: whoami_tcp(LOCAL, port) == "mover", what="route on the first network")
    old_ip = container_ip(box, first)
    second.connect(box)
    first.disconnect(box)
    box.reload()
    new_ip = container_ip(box, second)
    assert new_ip != old_ip
    eventually(lambda: (d.route("moving") or {}).get("target_host") == new_ip, what="retargeted")
    assert whoami_tcp(LOCAL, port) == "mover"
    d.wait_for_log("action=retarget route=moving")
    assert d.log().count("action=start route=moving") == 1


def test_labels_drive_proxy_protocol_and_acl(daemon: Daemon, run_container: Any, ns: str) -> None:
    pp_port, acl_port = free_port(), free_port()
    d = daemon()
    run_container(
        labels={
            f"{ns}.aliases": "pp,guarded",
            f"{ns}.pp.port": f"{pp_port}:7",
            f"{ns}.pp.proxy_protocol": "v1",
            f"{ns}.guarded.port": f"{acl_port}:7",
            f"{ns}.guarded.acl.allow": "127.0.0.2",
        }
    )
    eventually(lambda: tcp_connectable(LOCAL, pp_port) and tcp_connectable(LOCAL, acl_port))
    with socket.socket() as client:
        client.bind(("127.0.0.2", 0))
        client.connect((LOCAL, pp_port))
        client.sendall(b"payload")
        client.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := client.recv(4096):
            echoed += chunk
        source_port = client.getsockname()[1]
    # The echo server returns what it got: the PROXY header (the real client, and the address
    # it connected to) before the client's first byte.
    header = f"PROXY TCP4 127.0.0.2 127.0.0.1 {source_port} {pp_port}\r\n".encode()
    assert echoed == header + b"payload"

    for source, allowed in (("127.0.0.2", True), ("127.0.0.3", False)):
        got = exchange_or_reset(acl_port, b"hello\n", source=source)
        assert (got == b"hello\n") is allowed, (source, got)
    assert d.alive
