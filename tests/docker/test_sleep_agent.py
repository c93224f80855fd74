"""Sleep/wake through an agent: with ``--allow-lifecycle`` the agent stops and starts its
host's containers for the daemon, and a route through the agent wakes through it; without
the flag, the agent refuses and the container keeps running (its routes too)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.docker.conftest import Daemon
from tests.docker.test_agent import agent_daemon, running_agent
from tests.docker.test_sleep import asleep
from tests.helpers import free_port


def line_through(port: int, payload: bytes) -> bytes:
    """``payload`` (one line) echoed through the tunnel, the connection kept open both ways
    (a client's half-close does not cross the tunnel)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\n") and (chunk := s.recv(65536)):
            data += chunk
    return data


def test_a_route_through_the_agent_sleeps_and_wakes_through_it(
    daemon: Daemon, run_container: Any, ns: str, tmp_path: Path
) -> None:
    with running_agent(tmp_path, ns, extra=["--allow-lifecycle"]) as agent:
        port = free_port()
        d = agent_daemon(daemon, tmp_path, agent)
        labels = {
            f"{ns}.e.port": f"{port}:7",
            f"{ns}.idle_timeout": "1s",
            f"{ns}.stop_timeout": "1s",
        }
        box = run_container(labels=labels)

        asleep(d, box, "e", ("exited",))
        payload = b"woken through the agent\n"
        assert line_through(port, payload) == payload
        box.reload()
        assert box.status == "running" and d.route("e")["engine"] == "far"  # type: ignore[index]
        log = agent.log.read_text()
        assert f"/containers/{box.id}/stop" in log and "/start" in log, log[-2000:]


def test_without_the_flag_the_agent_keeps_its_containers_running(
    daemon: Daemon, run_container: Any, ns: str, tmp_path: Path
) -> None:
    with running_agent(tmp_path, ns) as agent:
        port = free_port()
        d = agent_daemon(daemon, tmp_path, agent)
        box = run_container(labels={f"{ns}.e.port": f"{port}:7", f"{ns}.idle_timeout": "1s"})
        d.wait_for_log(f"putting container {box.name} to sleep failed", 30)
        assert "403" in d.log()
        box.reload()
        assert box.status == "running" and d.route("e")["state"] == "running"  # type: ignore[index]
