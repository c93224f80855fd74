"""Several engines end to end: the machine's own engine plus a second one reached over
``tcp://`` (plain and TLS with client certificates) on loopback; routes of the second dial the
host's published ports; conflicts across engines; a wrong CA keeps an engine disconnected."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.certs import ScratchCA
from tests.docker.conftest import Daemon
from tests.docker.kit import container_ip, whoami_tcp
from tests.docker.remote_engine import RemoteEngine
from tests.helpers import eventually, free_port

LOCAL = "127.0.0.1"


@pytest.fixture
def remote(ns: str) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(ns, ns + "b").start()
    yield engine
    engine.stop()


def published_port(box: Any, port: str = "7/tcp") -> int:
    box.reload()
    return int(box.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


def source_states(d: Any) -> dict[str, str]:
    return {s["name"]: s["state"] for s in d.health()[1]["sources"]}


def test_two_engines_serve_routes(
    daemon: Daemon, run_container: Any, ns: str, remote: RemoteEngine
) -> None:
    here_port, there_port = free_port(), free_port()
    d = daemon("--docker", "unix:///var/run/docker.sock", "--docker", remote.url)
    here = run_container(
        labels={f"{ns}.aliases": "here", f"{ns}.here.port": f"{here_port}:7"},
        command=["--tag", "here"],
    )
    there = run_container(
        labels={f"{ns}b.aliases": "there", f"{ns}b.there.port": f"{there_port}:7"},
        command=["--tag", "there"],
        ports={"7/tcp": ("127.0.0.1", None)},
    )
    eventually(lambda: d.route("here") is not None and d.route("there") is not None)
    assert whoami_tcp(LOCAL, here_port) == "here"
    assert whoami_tcp(LOCAL, there_port) == "there"
    here_route, there_route = d.route("here"), d.route("there")
    assert here_route is not None and there_route is not None
    assert here_route["engine"] == "local" and here_route["target_host"] == container_ip(here)
    assert there_route["engine"] == remote.url
    assert (there_route["target_host"], there_route["target_port"]) == (
        "127.0.0.1",
        published_port(there),
    )
    assert source_states(d) == {"local": "connected", remote.url: "connected"}
    assert remote.requests > 0


def test_remote_routes_need_a_published_port_and_conflicts_span_engines(
    daemon: Daemon, run_container: Any, ns: str, remote: RemoteEngine
) -> None:
    port, shared = free_port(), free_port()
    d = daemon("--docker", "unix:///var/run/docker.sock", "--docker", remote.url)
    run_container(labels={f"{ns}b.aliases": "hidden", f"{ns}b.hidden.port": f"{port}:7"})
    eventually(
        lambda: any(e["alias"] == "hidden" for e in d.routes()["errors"]), what="label error"
    )
    (error,) = [e for e in d.routes()["errors"] if e["alias"] == "hidden"]
    assert "not published on the remote host" in error["message"]

    both = {f"{ns}.aliases": "dup", f"{ns}.dup.port": f"{shared}:7"}
    run_container(
        labels={**both, f"{ns}b.aliases": "dup", f"{ns}b.dup.port": f"{shared}:7"},
        ports={"7/tcp": ("127.0.0.1", None)},
    )
    eventually(
        lambda: (
            {r["state"] for r in d.routes()["routes"] if r["alias"] == "dup"}
            == {"running", "conflict"}
        ),
        what="one engine's route runs, the other's is a conflict",
    )
    (conflict,) = [r for r in d.routes()["routes"] if r["state"] == "conflict"]
    assert "is held by" in conflict["error"]


def test_tls_engine_with_client_certificates(
    daemon: Daemon, run_container: Any, ns: str, tmp_path: Path
) -> None:
    ca = ScratchCA(tmp_path / "ca")
    server, client = ca.issue("server", server=True), ca.issue("client", server=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.pem))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(server.cert, server.key)
    remote = RemoteEngine(ns, ns + "b", ssl_context=context).start()
    try:
        port = free_port()
        config = tmp_path / "config.yml"
        config.write_text(
            "docker:\n"
            f"  - url: {remote.url}\n"
            "    name: secure\n"
            f"    tls_ca: {ca.pem}\n"
            f"    tls_cert: {client.cert}\n"
            f"    tls_key: {client.key}\n"
        )
        d = daemon("--config", str(config))
        box = run_container(
            labels={f"{ns}b.aliases": "tls", f"{ns}b.tls.port": f"{port}:7"},
            command=["--tag", "over-tls"],
            ports={"7/tcp": ("127.0.0.1", None)},
        )
        eventually(lambda: d.route("tls") is not None, what="route through the TLS engine")
        assert whoami_tcp(LOCAL, port) == "over-tls"
        route = d.route("tls")
        assert route is not None and route["engine"] == "secure"
        assert route["target_port"] == published_port(box)

        other = ScratchCA(tmp_path / "other", "another CA")
        wrong = tmp_path / "wrong.yml"
        wrong.write_text(config.read_text().replace(str(ca.pem), str(other.pem)))
        bad = daemon("--config", str(wrong), wait_healthy=False)
        eventually(lambda: bad.health()[0] == 200, what="the engine tried once")
        (source,) = bad.health()[1]["sources"]
        assert source["state"] == "disconnected" and "certificate" in source["error"].lower()
    finally:
        remote.stop()
