"""The agent end to end: ``agent certs`` makes the certificates, a real ``godoxy-streams
agent`` serves this host's engine, and a daemon whose only engine is ``agent://`` routes a
container's TCP port through the tunnel. Refusals: no client certificate, a forged or
corrupted header, a destination no label publishes; UDP routes are errors (not offered)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from godoxy_streams.agent.certs import client_context
from godoxy_streams.agent.client.datagrams import DatagramTunnel, Flow
from godoxy_streams.agent.quic.config import client_configuration
from godoxy_streams.agent.wire.flow_wire import OPEN
from godoxy_streams.agent.wire.header import (
    ALPN_HTTP,
    ALPN_STREAM,
    HEADER_SIZE,
    PROBE_OK,
    StreamHeader,
)
from tests.docker.conftest import Daemon
from tests.docker.kit import container_ip
from tests.helpers import eventually, free_port, tcp_connectable, udp_exchange

LOCAL = "127.0.0.1"


@dataclass
class Agent:
    host: str
    port: int
    certs: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def context(self, alpn: str) -> ssl.SSLContext:
        c = self.certs
        return client_context(c / "ca.pem", c / "daemon.pem", c / "daemon-key.pem", [alpn])

    def tls(self, alpn: str) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=5)
        return self.context(alpn).wrap_socket(raw, server_hostname=self.host)

    def api(self, path: str) -> Any:
        with self.tls(ALPN_HTTP) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return json.loads(body)

    def stream(self, header: bytes, payload: bytes = b"", until: bytes = b"") -> bytes:
        """What the agent answers to ``header`` + ``payload`` until it closes (or ``until``
        was read)."""
        with self.tls(ALPN_STREAM) as s:
            s.sendall(header + payload)
            data = b""
            try:
                while (not until or data != until) and (chunk := s.recv(65536)):
                    data += chunk
            except (ConnectionError, ssl.SSLError):
                pass
            return data


@contextlib.contextmanager
def running_agent(
    tmp_path: Path, ns: str, host: str = LOCAL, extra: list[str] | None = None
) -> Iterator[Agent]:
    """``agent certs`` for ``host``, then ``godoxy-streams agent`` listening there; stopped
    with SIGTERM (and asserted to exit 0) at the end."""
    certs = tmp_path / "certs"
    made = subprocess.run(
        [sys.executable, "-m", "godoxy_streams", "agent", "certs", "--out", str(certs),
         "--name", host],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "PRIVATE KEY" not in made.stdout and str(certs / "daemon.pem") in made.stdout
    assert (certs / "daemon-key.pem").stat().st_mode & 0o077 == 0
    port = free_port()
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "godoxy_streams", "agent", "--listen", f"{host}:{port}",
             "--namespace", ns, "--tls-ca", str(certs / "ca.pem"),
             "--tls-cert", str(certs / "agent.pem"), "--tls-key", str(certs / "agent-key.pem"),
             *(extra or [])],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        eventually(lambda: tcp_connectable(host, port), what="agent listening")
        yield Agent(host, port, certs, log, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()


@pytest.fixture
def agent(tmp_path: Path, ns: str) -> Iterator[Agent]:
    with running_agent(tmp_path, ns) as started:
        yield started


def whoami_line(port: int, host: str = LOCAL) -> str:
    """The echo server's tag, read as one line with the connection kept open both ways (a
    client's half-close does not cross the tunnel: TLS has none)."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"whoami\n")
        data = b""
        while not data.endswith(b"\n") and (chunk := s.recv(100)):
            data += chunk
    return data.decode().rstrip("\n")


def agent_config(tmp_path: Path, address: str, certs: Path) -> Path:
    """A daemon configuration whose only engine is the agent at ``address``, named "far"."""
    config = tmp_path / "daemon.yml"
    config.write_text(
        f"docker:\n  - url: agent://{address}\n    name: far\n"
        f"    tls_ca: {certs / 'ca.pem'}\n    tls_cert: {certs / 'daemon.pem'}\n"
        f"    tls_key: {certs / 'daemon-key.pem'}\n"
    )
    return config


def echo_routes(ns: str, tcp_port: int, udp_port: int) -> dict[str, str]:
    """Labels for two routes to the echo server's port 7: "e" (TCP) and "u" (UDP)."""
    return {
        f"{ns}.aliases": "e,u",
        f"{ns}.e.port": f"{tcp_port}:7",
        f"{ns}.u.scheme": "udp",
        f"{ns}.u.port": f"{udp_port}:7",
    }


def agent_daemon(daemon: Daemon, tmp_path: Path, agent: Agent) -> Any:
    config = agent_config(tmp_path, f"{agent.host}:{agent.port}", agent.certs)
    return daemon("--config", str(config))


def test_tcp_through_the_tunnel(
    daemon: Daemon, run_container: Any, ns: str, tmp_path: Path, agent: Agent
) -> None:
    assert agent.api("/agent/capabilities") == {"tcp": True, "udp": True}
    assert agent.api("/agent/version")["protocol"] == 1
    port, udp_port = free_port(), free_port("udp")
    d = agent_daemon(daemon, tmp_path, agent)
    box = run_container(labels=echo_routes(ns, port, udp_port), command=["--tag", "via-agent"])
    eventually(lambda: (d.route("e") or {}).get("state") == "running", what="tunnelled route")
    assert whoami_line(port) == "via-agent"
    route = d.route("e")
    assert route is not None and route["engine"] == "far"
    assert (route["target_host"], route["target_port"]) == (container_ip(box), 7)
    assert agent.api("/agent/health")["tunnels"] >= 1
    # A client's close ends the tunnel and the agent's connection to the container.
    eventually(lambda: agent.api("/agent/health")["open"] == 0, what="no tunnel left open")
    # UDP: the same container's UDP port through a QUIC flow; a datagram too large for one
    # QUIC datagram (3000 bytes) crosses on the flow's stream, in order with the rest.
    assert (
        eventually(lambda: udp_reply(LOCAL, udp_port, b"whoami"), what="UDP through the agent")
        == b"via-agent"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(3)
        client.connect((LOCAL, udp_port))
        for payload in (b"small", b"x" * 3000, b"y" * 60000, b"after"):
            client.send(payload)
            assert client.recv(65536) == payload
    health = agent.api("/agent/health")
    assert health["flows"] >= 1 and health["flows_open"] >= 1
    _, daemon_health = d.get("/healthz")
    assert daemon_health["agent_flows"]["far"]["connected"] is True
    assert d.route("u")["engine"] == "far"  # type: ignore[index]
    # The engine view through the agent carries no environment.
    inspect = agent.api(f"/containers/{box.id}/json")
    assert "Env" not in inspect["Config"] and inspect["Id"] == box.id
    # When the destination ends the connection (FIN), the client sees the end through the
    # tunnel at once, with the connection itself and the container still there.
    closer_port = free_port()
    run_container(
        labels={f"{ns}.aliases": "c", f"{ns}.c.port": f"{closer_port}:7"},
        command=["--tag", "closer", "--close-after-whoami"],
    )
    eventually(lambda: (d.route("c") or {}).get("state") == "running", what="closer route")
    with socket.create_connection((LOCAL, closer_port), timeout=3) as s:
        s.sendall(b"whoami\n")
        data = b""
        while chunk := s.recv(100):  # a timeout here means the end did not cross
            data += chunk
    assert data == b"closer\n"


def udp_reply(host: str, port: int, payload: bytes) -> bytes | None:
    """One datagram's reply, or None when none came within a second."""
    try:
        return udp_exchange(host, port, payload)
    except (TimeoutError, ConnectionRefusedError):
        return None


def test_an_agent_without_udp(daemon: Daemon, run_container: Any, ns: str, tmp_path: Path) -> None:
    with running_agent(tmp_path, ns, extra=["--no-udp"]) as agent:
        assert agent.api("/agent/capabilities") == {"tcp": True, "udp": False}
        d = agent_daemon(daemon, tmp_path, agent)
        run_container(
            labels={f"{ns}.aliases": "u", f"{ns}.u.scheme": "udp",
                    f"{ns}.u.port": f"{free_port('udp')}:7"},
        )  # fmt: skip
        error = eventually(
            lambda: [e for e in d.routes()["errors"] if e["alias"] == "u"], what="UDP refused"
        )
        assert "cannot carry UDP" in error[0]["message"]


def test_failover_through_the_tunnel(
    daemon: Daemon, run_container: Any, ns: str, tmp_path: Path, agent: Agent
) -> None:
    port = free_port()
    d = agent_daemon(daemon, tmp_path, agent)
    labels = {
        f"{ns}.aliases": "e",
        f"{ns}.e.port": f"{port}:7",
        f"{ns}.e.load_balance.mode": "round_robin",
        f"{ns}.e.healthcheck.disable": "true",
    }
    run_container(labels=labels, command=["--tag", "live"])
    run_container(labels=labels, command=["--tag", "deaf", "-t", "8"])
    eventually(lambda: len((d.route("e") or {}).get("members", [])) == 2, what="two members")
    # The agent cannot reach the deaf member: the daemon learns it at once and fails over.
    assert {whoami_line(port) for _ in range(6)} == {"live"}
    members = {m["container"]: m for m in d.route("e")["members"]}  # type: ignore[index]
    assert sum(m["failures"] for m in members.values()) >= 1
    # The tunnel's TLS end closes each connection without asyncio's half-close warning.
    eventually(lambda: d.log().count(" access route=e ") >= 6, what="six access records")
    assert "eof_received" not in d.log()


def test_refusals(run_container: Any, ns: str, agent: Agent) -> None:
    box = run_container(
        labels={f"{ns}.aliases": "e", f"{ns}.e.port": f"{free_port()}:7"}, command=["--tag", "t"]
    )
    ip = container_ip(box)
    good = StreamHeader(ip, 7).encode()
    # The agent answers PROBE_OK once connected, then relays.
    assert agent.stream(good, b"whoami\n", until=PROBE_OK + b"t\n") == PROBE_OK + b"t\n"
    assert agent.stream(StreamHeader(ip, 7, probe=True).encode()) == PROBE_OK
    corrupted = bytearray(good)
    corrupted[20] ^= 0x01
    assert agent.stream(bytes(corrupted), b"whoami\n") == b""
    forged = b"GET / HTTP/1.1\r\n".ljust(HEADER_SIZE - 4, b"x")  # a valid checksum, no magic
    forged += zlib.crc32(forged).to_bytes(4, "big")
    assert agent.stream(forged, b"whoami\n") == b""
    assert agent.stream(StreamHeader(ip, 9).encode(), b"whoami\n") == b""
    assert agent.stream(StreamHeader("127.0.0.1", 22).encode(), b"x") == b""
    raw = socket.create_connection((LOCAL, agent.port), timeout=5)
    anonymous = ssl.create_default_context(cafile=str(agent.certs / "ca.pem"))
    anonymous.set_alpn_protocols([ALPN_STREAM])
    before = agent.api("/agent/health")["tunnels"]
    try:  # TLS 1.3: the refusal may arrive as an alert, a reset, or an end at the first read
        with anonymous.wrap_socket(raw, server_hostname=LOCAL) as s:
            s.sendall(good + b"whoami\n")
            got = s.recv(100)
    except (ssl.SSLError, ConnectionError):
        got = b""
    assert got == b"" and agent.api("/agent/health")["tunnels"] == before
    log = agent.log.read_text()
    assert "checksum mismatch" in log and "bad magic" in log
    assert "is not published by any label here" in log


@dataclass
class Netns:
    name: str
    host_side: str  # the host's address on the link
    ns_side: str  # the namespace's address on the link

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args], capture_output=True, text=True, **kwargs
        )


@pytest.fixture
def netns(ns: str) -> Iterator[Netns]:
    """A network namespace linked to the host by one veth pair (a /30) and nothing else: no
    default route, so it reaches the host's link address and no container."""
    name = f"gds-test-{ns[-10:]}"
    octet = 1 + int(ns[-4:]) % 250  # a distinct 10.251.<octet>.0/30 per test
    host_ip, ns_ip = f"10.251.{octet}.1", f"10.251.{octet}.2"
    veth = f"gdsv{octet}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "n"],
        ["ip", "link", "set", veth + "n", "netns", name],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", veth],
        ["ip", "link", "set", veth, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", veth + "n"],
        ["ip", "netns", "exec", name, "ip", "link", "set", veth + "n", "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=10)
        yield Netns(name, host_ip, ns_ip)
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_a_daemon_that_cannot_reach_the_containers_serves_them_through_the_agent(
    run_container: Any, ns: str, tmp_path: Path, netns: Netns
) -> None:
    listen_port, udp_port = free_port(), free_port("udp")
    box = run_container(
        labels=echo_routes(ns, listen_port, udp_port), command=["--tag", "isolated"]
    )
    # The namespace has no way to the container by itself.
    direct = netns.run(
        sys.executable, "-c",
        f"import socket; socket.create_connection(({container_ip(box)!r}, 7), timeout=2)",
        timeout=30,
    )  # fmt: skip
    assert direct.returncode != 0 and "unreachable" in direct.stderr.lower()
    with running_agent(tmp_path, ns, netns.host_side) as agent:
        config = agent_config(tmp_path, f"{agent.host}:{agent.port}", agent.certs)
        daemon_log = tmp_path / "daemon.log"
        with daemon_log.open("wb") as out:
            daemon = subprocess.Popen(
                ["ip", "netns", "exec", netns.name, sys.executable, "-m", "godoxy_streams",
                 "run", "--config", str(config), "--namespace", ns, "--api", "",
                 "--default-bind", netns.ns_side],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            eventually(
                lambda: tcp_connectable(netns.ns_side, listen_port),
                timeout=20,
                what="the daemon in the namespace listening",
            )
            tag = whoami_line(listen_port, netns.ns_side)
            assert tag == "isolated", daemon_log.read_text()[-3000:]
            udp_tag = eventually(
                lambda: udp_reply(netns.ns_side, udp_port, b"whoami"),
                timeout=20,
                what="UDP from the namespace's daemon through the agent",
            )
            assert udp_tag == b"isolated"
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=20)
        assert code == 0, daemon_log.read_text()[-3000:]


async def test_flow_refusals(run_container: Any, ns: str, agent: Agent) -> None:
    """The datagram channel refuses what the stream channel refuses: no client certificate,
    a corrupted header, a destination no label publishes (for UDP: a TCP-only port too)."""
    box = run_container(
        labels={f"{ns}.aliases": "e,u", f"{ns}.e.port": f"{free_port()}:9",
                f"{ns}.u.scheme": "udp", f"{ns}.u.port": f"{free_port('udp')}:7"},
        command=["--tag", "t", "-t", "9", "-u", "7"],
    )  # fmt: skip
    ip = container_ip(box)
    c = agent.certs
    config = client_configuration(c / "ca.pem", c / "daemon.pem", c / "daemon-key.pem", LOCAL)
    tunnel = DatagramTunnel(LOCAL, agent.port, config)
    try:
        flow = await tunnel.open(ip, 7, lambda _: None)
        loop = asyncio.get_running_loop()
        flow.send(b"whoami")
        assert await asyncio.wait_for(loop.sock_recv(flow, 100), 5) == b"t"
        flow.close()
        for host, port in ((ip, 9), (ip, 8), (LOCAL, 53)):  # TCP only, unlabelled, the host
            with pytest.raises(ConnectionRefusedError):
                await tunnel.open(host, port, lambda _: None)
        link = await tunnel._connected()
        corrupted = bytearray(StreamHeader(ip, 7).encode())
        corrupted[20] ^= 0x01
        raw = link.flows[1000] = Flow(link, 1000, lambda _: None)
        link.send_message(OPEN, 1000, bytes(corrupted))
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(raw.answer, 5)
        raw.session_end.close()
    finally:
        await tunnel.close()
    anonymous = client_configuration(c / "ca.pem", c / "daemon.pem", c / "daemon-key.pem", LOCAL)
    anonymous.certificate = anonymous.private_key = None
    stranger = DatagramTunnel(LOCAL, agent.port, anonymous)
    try:
        with pytest.raises(ConnectionRefusedError, match="no client certificate"):
            await stranger.open(ip, 7, lambda _: None)
    finally:
        await stranger.close()
    health = agent.api("/agent/health")
    assert health["flows"] == 1 and health["flows_refused"] == 5
    log = agent.log.read_text()
    assert "checksum mismatch" in log and "udp " + ip + ":9 is not published" in log
    assert "refused: no client certificate" in log
