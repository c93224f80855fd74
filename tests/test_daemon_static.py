"""The daemon without Docker: static routes, reload on SIGHUP and on change, graceful SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server, udp_echo_server
from tests.helpers import (
    eventually,
    exchange_or_reset,
    free_port,
    tcp_connectable,
    tcp_exchange,
    udp_exchange,
)

LOCAL = "127.0.0.1"


def routes_yaml(**routes: tuple[int, int]) -> str:
    lines = ["routes:"]
    for name, (listen, target) in routes.items():
        lines.append(f"  {name}: {{scheme: tcp, bind: {LOCAL}, port: '{listen}:{target}'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def upstreams() -> Iterator[tuple[int, int]]:
    with echo_server(b"one ") as one, echo_server(b"two ") as two:
        yield one, two


def static_daemon(tmp_path: Path, routes: Path) -> DaemonProcess:
    """The daemon serving ``routes`` with the Docker provider off, started and healthy."""
    args = ("--no-docker", "--routes", str(routes))
    return DaemonProcess(tmp_path, *args, namespace=unique_namespace()).start()


def whoami(port: int) -> bytes:
    return tcp_exchange(LOCAL, port, b"whoami\n")


def test_routes_file_reload_keeps_unchanged_routes(
    tmp_path: Path, upstreams: tuple[int, int]
) -> None:
    one, two = upstreams
    p1, p2, p3 = free_port(), free_port(), free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(routes_yaml(a=(p1, one), b=(p2, one)))
    d = static_daemon(tmp_path, routes)
    try:
        assert whoami(p1) == b"one whoami\n" and whoami(p2) == b"one whoami\n"
        with socket.create_connection((LOCAL, p1), timeout=5) as live:
            # b moves to the other upstream (a retarget), c is new, a is unchanged.
            routes.write_text(routes_yaml(a=(p1, one), b=(p2, two), c=(p3, two)))
            eventually(lambda: tcp_connectable(LOCAL, p3), what="file change picked up")
            assert whoami(p2) == b"two whoami\n"
            live.sendall(b"still alive\n")
            assert live.recv(100) == b"still alive\n"
            # SIGHUP reloads too: drop c.
            routes.write_text(routes_yaml(a=(p1, one), b=(p2, two)))
            assert d.proc is not None
            d.proc.send_signal(signal.SIGHUP)
            eventually(lambda: not tcp_connectable(LOCAL, p3), what="SIGHUP reload")
            live.sendall(b"and now\n")
            assert live.recv(100) == b"and now\n"
        log = d.log()
        assert f"listen={LOCAL}:{p1} " in log and log.count("action=start route=a ") == 1
        assert "action=retarget route=b" in log
    finally:
        assert d.stop() == 0


def test_bad_routes_file_keeps_previous_routes(tmp_path: Path, upstreams: tuple[int, int]) -> None:
    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(routes_yaml(a=(port, upstreams[0])))
    d = static_daemon(tmp_path, routes)
    try:
        routes.write_text("routes: [this is: not: valid")
        d.wait_for_log("routes file not loaded, keeping the previous routes")
        assert whoami(port) == b"one whoami\n" and d.alive
    finally:
        assert d.stop() == 0


def test_sigterm_closes_listeners_and_drains_live_connections(
    tmp_path: Path, upstreams: tuple[int, int]
) -> None:
    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(
        f"routes:\n  a: {{scheme: tcp, bind: {LOCAL}, port: '{port}:{upstreams[0]}', "
        "drain_timeout: 30s}\n"
    )
    d = static_daemon(tmp_path, routes)
    assert d.proc is not None
    with socket.create_connection((LOCAL, port), timeout=5) as live:
        live.sendall(b"before\n")
        assert live.recv(100) == b"before\n"
        d.proc.send_signal(signal.SIGTERM)
        eventually(lambda: not tcp_connectable(LOCAL, port), what="listener closed at once")
        live.sendall(b"during drain\n")
        assert live.recv(100) == b"during drain\n"
        assert d.alive, "the daemon waits for the live connection"
        live.shutdown(socket.SHUT_WR)
        assert live.recv(100) == b""
    assert d.proc.wait(timeout=10) == 0
    assert "received SIGTERM" in d.log() and "stopped" in d.log()


def test_second_signal_cuts_live_connections(tmp_path: Path, upstreams: tuple[int, int]) -> None:
    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(
        f"routes:\n  a: {{scheme: tcp, bind: {LOCAL}, port: '{port}:{upstreams[0]}', "
        "drain_timeout: 60s}\n"
    )  # a drain far longer than the wait below: only the cut can end it in time
    d = static_daemon(tmp_path, routes)
    assert d.proc is not None
    with socket.create_connection((LOCAL, port), timeout=5) as live:
        live.sendall(b"x")
        assert live.recv(10) == b"x"
        d.proc.send_signal(signal.SIGTERM)
        d.wait_for_log("shutting down")
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(timeout=10) == 0
        live.settimeout(5)
        try:
            ended = live.recv(10) == b""
        except ConnectionResetError:
            ended = True
        assert ended, "the live connection was cut"
    assert "second signal: cutting live connections" in d.log()


def test_config_command_prints_effective_settings(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "godoxy_streams", "config", "--api", "127.0.0.1:9999"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"GODOXY_STREAMS_NAMESPACE": "fromenv", "PATH": "/usr/bin:/bin"},
    )
    config = json.loads(out.stdout)
    assert config["api"] == "127.0.0.1:9999" and config["namespace"] == "fromenv"


def test_healthz_is_503_until_the_engine_answered_or_failed_once(
    tmp_path: Path, upstreams: tuple[int, int]
) -> None:
    """An engine that accepts but never answers keeps the daemon 'starting' (503), while the
    static routes already serve."""
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(8)
    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(routes_yaml(a=(port, upstreams[0])))
    args = ("--docker", f"unix://{tmp_path}/silent.sock", "--routes", str(routes))
    d = DaemonProcess(tmp_path, *args, namespace=unique_namespace())
    try:
        d.start(wait_healthy=False)
        status, body = d.health()
        assert status == 503 and body["status"] == "starting"
        assert body["sources"][0]["state"] == "connecting"
        eventually(lambda: whoami(port) == b"one whoami\n", what="static route serves")
    finally:
        assert d.stop() == 0
        silent.close()


def test_no_docker_and_no_routes_file_is_ready_with_nothing_to_serve(tmp_path: Path) -> None:
    """Nothing to wait for: ready (200) after one empty pass, not 'starting' for ever."""
    d = DaemonProcess(tmp_path, "--no-docker", namespace=unique_namespace())
    try:
        d.start(wait_healthy=False)
        eventually(lambda: d.health()[0] == 200, what="ready with no source at all")
        status, body = d.health()
        assert body["status"] == "ok" and body["routes_running"] == 0
    finally:
        assert d.stop() == 0


def test_metrics_count_connections_and_bytes_per_route(
    tmp_path: Path, upstreams: tuple[int, int]
) -> None:
    import urllib.request

    tcp_port, udp_port = free_port(), free_port("udp")
    with udp_echo_server() as udp_upstream:
        routes = tmp_path / "routes.yml"
        routes.write_text(
            routes_yaml(echo=(tcp_port, upstreams[0]))
            + f"  dns: {{scheme: udp, bind: {LOCAL}, port: '{udp_port}:{udp_upstream}'}}\n"
        )
        d = static_daemon(tmp_path, routes)
        try:
            for _ in range(3):
                assert tcp_exchange(LOCAL, tcp_port, b"x" * 1000) == b"x" * 1000
            for size in (10, 200, 1400):  # each exchange from a new client port: 6 sessions
                for _ in range(2):
                    assert udp_exchange(LOCAL, udp_port, b"u" * size, timeout=3) == b"u" * size
            url = f"http://127.0.0.1:{d.api_port}/metrics"

            def scrape() -> str:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return str(response.read().decode())

            def series(name: str, alias: str, scheme: str, port: int, **extra: str) -> str:
                labels = {
                    "alias": alias,
                    "listen": f"{LOCAL}:{port}",
                    "scheme": scheme,
                    "source": f"file:{alias}",
                    **extra,
                }
                pairs = sorted(labels.items())
                return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"

            tcp = ("echo", "tcp", tcp_port)
            udp = ("dns", "udp", udp_port)

            def settled() -> str | None:
                text = scrape()
                active = series("godoxy_streams_connections_active", *tcp, path="userspace")
                done = active + " 0.0" in text
                return text if done else None

            text = eventually(settled, what="TCP connections closed")
            for direction in ("client_to_upstream", "upstream_to_client"):
                on = {"direction": direction, "path": "userspace"}
                bytes_tcp = series("godoxy_streams_bytes_total", *tcp, **on)
                bytes_udp = series("godoxy_streams_bytes_total", *udp, **on)
                assert bytes_tcp + " 3000.0" in text
                assert bytes_udp + f" {2 * (10 + 200 + 1400)}.0" in text
            total = "godoxy_streams_connections_total"
            assert series(total, *tcp, path="userspace") + " 3.0" in text
            assert series(total, *udp, path="userspace") + " 6.0" in text
            assert series("godoxy_streams_route_state", *tcp, state="running") + " 1.0" in text
            assert 'godoxy_streams_routes{state="running"} 2.0' in text
            assert "godoxy_streams_reconcile_duration_seconds_count" in text
        finally:
            assert d.stop() == 0


def test_api_token_is_required_when_set(tmp_path: Path, upstreams: tuple[int, int]) -> None:
    """Data needs the token; the page and /healthz do not. A malformed header (another
    scheme, no token, bytes that are not ASCII) is a 401 like a wrong token."""
    import http.client

    token = "t0ken-" + "x" * 20
    routes = tmp_path / "routes.yml"
    routes.write_text(routes_yaml(a=(free_port(), upstreams[0])))
    args = ("--no-docker", "--routes", str(routes))
    d = DaemonProcess(
        tmp_path, *args, namespace=unique_namespace(), env={"GODOXY_STREAMS_API_TOKEN": token}
    ).start()

    def status(path: str, authorization: bytes | None = None) -> int:
        conn = http.client.HTTPConnection(LOCAL, d.api_port, timeout=5)
        try:
            conn.putrequest("GET", path)
            if authorization is not None:
                conn.putheader("Authorization", authorization)
            conn.endheaders()
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    try:
        good = f"Bearer {token}".encode()
        for path in ("/api/routes", "/metrics", "/api/nothing-here"):
            assert status(path) == 401
            assert status(path, good) in (200, 404)
            for bad in (
                b"Bearer wrong",
                b"Bearer",
                b"Bearer ",
                f"Basic {token}".encode(),
                token.encode(),
                b"Bearer \xc3\xa9t\xc3\xa9",
                b"Bearer " + token.encode() + b"\xff",
                b"\xff\xfe",
            ):
                assert status(path, bad) == 401, (path, bad)
        assert status("/api/routes", f"bearer {token}".encode()) == 200  # scheme: any case
        assert status("/") == 200  # the page asks for the token itself
        assert status("/healthz") == 200  # probes need no token
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_log_line_per_connection(
    tmp_path: Path, upstreams: tuple[int, int], log_format: str
) -> None:
    import json

    port = free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(routes_yaml(echo=(port, upstreams[0])))
    args = ("--no-docker", "--routes", str(routes), "--log-format", log_format)
    d = DaemonProcess(tmp_path, *args, namespace=unique_namespace()).start()
    try:
        with socket.socket() as client:
            client.bind(("127.0.0.3", 0))
            client.connect((LOCAL, port))
            client.sendall(b"12345")
            assert client.recv(10) == b"12345"
            source = f"127.0.0.3:{client.getsockname()[1]}"
        d.wait_for_log(source)
        (line,) = [line for line in d.log().splitlines() if source in line]
        if log_format == "text":
            assert " access " in line and "outcome=client_closed" in line
            assert "bytes_in=5 bytes_out=5" in line and "route=echo" in line
        else:
            extra = json.loads(line)["record"]["extra"]
            assert extra["client"] == source and extra["outcome"] == "client_closed"
            assert (extra["bytes_in"], extra["bytes_out"], extra["route"]) == (5, 5, "echo")
            assert extra["target"] == f"127.0.0.1:{upstreams[0]}"
    finally:
        assert d.stop() == 0


def test_route_acl_and_global_acl(tmp_path: Path, upstreams: tuple[int, int]) -> None:
    import urllib.request

    port, other = free_port(), free_port()
    routes = tmp_path / "routes.yml"
    routes.write_text(
        "routes:\n"
        f"  guarded: {{scheme: tcp, bind: {LOCAL}, port: '{port}:{upstreams[0]}',"
        " acl: {allow: [127.0.0.2, 127.0.0.3], deny: [127.0.0.3]}}\n"
        f"  open: {{scheme: tcp, bind: {LOCAL}, port: '{other}:{upstreams[0]}'}}\n"
    )
    args = ("--no-docker", "--routes", str(routes))
    env = {"GODOXY_STREAMS_ACL__DENY": "127.0.0.4"}
    d = DaemonProcess(tmp_path, *args, namespace=unique_namespace(), env=env).start()
    try:
        assert exchange_or_reset(port, b"hi\n", source="127.0.0.2") == b"hi\n"
        assert exchange_or_reset(port, b"hi\n", source="127.0.0.3") == b""  # deny beats allow
        assert exchange_or_reset(port, b"hi\n", source="127.0.0.5") == b""  # not in the allow list
        assert (
            exchange_or_reset(other, b"hi\n", source="127.0.0.5") == b"hi\n"
        )  # no route ACL: open
        assert (
            exchange_or_reset(other, b"hi\n", source="127.0.0.4") == b""
        )  # the global ACL applies everywhere
        with urllib.request.urlopen(f"http://127.0.0.1:{d.api_port}/metrics") as response:
            text = response.read().decode()
        denied = [line for line in text.splitlines() if line.startswith("godoxy_streams_denied")]
        assert any('alias="guarded"' in line and line.endswith(" 2.0") for line in denied)
        assert any('alias="open"' in line and line.endswith(" 1.0") for line in denied)
    finally:
        assert d.stop() == 0


def test_static_pool_fails_over_and_routes_cli_shows_members(
    tmp_path: Path, upstreams: tuple[int, int]
) -> None:
    one, two = upstreams
    dead, port = free_port(), free_port()
    routes = tmp_path / "routes.yml"
    entry = (
        "{{scheme: tcp, bind: %s, host: %s, port: '%d:{t}', load_balance: {{mode: round_robin}}}}"
    )
    line = entry % (LOCAL, LOCAL, port)
    routes.write_text(
        "routes:\n"
        + "".join(f"  {n}: {line.format(t=t)}\n" for n, t in (("a", one), ("b", dead), ("c", two)))
    )
    d = static_daemon(tmp_path, routes)
    try:
        replies = [whoami(port) for _ in range(9)]
        assert set(replies) == {b"one whoami\n", b"two whoami\n"}
        (route,) = d.routes()["routes"]
        states = {m["port"]: m["state"] for m in route["members"]}
        assert states[one] == states[two] == "healthy" and states[dead] in ("failing", "down")
        shown = subprocess.run(
            [sys.executable, "-m", "godoxy_streams", "routes", "--api", f"127.0.0.1:{d.api_port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert "members of a (round_robin):" in shown.stdout
        assert f"127.0.0.1:{dead}" in shown.stdout and "refused" in shown.stdout
    finally:
        assert d.stop() == 0
