"""The read-only Docker socket filter (``godoxy-streams socket-proxy``) as a process in front of
the real engine: reads pass (events streamed live), writes and other endpoints get 403 and never
happen, ``Config.Env`` never leaves, and the daemon runs through it."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from godoxy_streams.sources.socket_proxy import allowed, strip_env
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.docker.conftest import kit_sweep as kit_sweep  # noqa: F401  (the kit's fixtures)
from tests.docker.conftest import make_network as make_network  # noqa: F401
from tests.docker.conftest import run_container as run_container  # noqa: F401
from tests.docker.conftest import test_image as test_image  # noqa: F401
from tests.helpers import docker_unavailable, eventually, free_port, tcp_connectable, tcp_exchange

V = "/v1.41"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 15.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Filter:
    """One ``godoxy-streams socket-proxy`` subprocess serving ``path``."""

    def __init__(self, workdir: Path, engine: str, *args: str) -> None:
        self.path = workdir / "filter.sock"
        self.log_path = workdir / "filter.log"
        cmd = [sys.executable, "-m", "godoxy_streams", "socket-proxy"]
        cmd += ["--listen", str(self.path), "--engine", engine, "--log-level", "DEBUG", *args]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        eventually(lambda: self.request("/_ping")[0] == 200, what="filter answers /_ping")

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self, target: str, method: str = "GET", body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = UnixHTTPConnection(self.path)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, target: str) -> Any:
        status, _, body = self.request(target)
        assert status == 200, (target, status, body)
        return json.loads(body)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host.removeprefix("unix://")
    if host:
        docker_unavailable(f"the filter needs the engine's unix socket, not DOCKER_HOST={host}")
    return "/var/run/docker.sock"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gds-sp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_filter(short_dir: Path, docker_client: Any) -> Iterator[Callable[..., Filter]]:
    started: list[Filter] = []

    def start(*args: str) -> Filter:
        workdir = short_dir / str(len(started))
        workdir.mkdir()
        started.append(Filter(workdir, engine_socket(), *args))
        return started[-1]

    yield start
    for f in started:
        code = f.stop()
        assert code == 0, f"socket-proxy exited {code}\n{f.log()[-3000:]}"
        assert not f.path.exists(), "the socket file is removed at exit"


@pytest.fixture
def proxy(start_filter: Callable[..., Filter]) -> Filter:
    return start_filter()


# -- the rule, without an engine --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/_ping", (True, False)),
        ("HEAD", "/_ping", (True, False)),
        ("GET", "/version", (True, False)),
        ("GET", "/v1.41/containers/json?all=1&filters=%7B%7D", (True, False)),
        ("GET", "/v1.41/containers/0123abcd/json", (True, True)),
        ("GET", "/containers/my_box.1-a/json?size=1", (True, True)),
        ("GET", "/v1.41/events?since=1&filters=%7B%22type%22%3A%5B%22c%22%5D%7D", (True, False)),
        ("POST", "/v1.41/containers/create", (False, False)),
        ("DELETE", "/v1.41/containers/abc", (False, False)),
        ("POST", "/v1.41/containers/abc/exec", (False, False)),
        ("PUT", "/v1.41/containers/abc/archive?path=/", (False, False)),
        ("GET", "/v1.41/containers/abc/logs", (False, False)),
        ("GET", "/v1.41/containers/abc/archive?path=/etc", (False, False)),
        ("GET", "/v1.41/info", (True, False)),
        ("GET", "/v1.41/services", (True, True)),
        ("GET", "/v1.41/tasks?filters=%7B%7D", (True, True)),
        ("GET", "/v1.41/nodes", (True, False)),
        ("POST", "/v1.41/services/create", (False, False)),
        ("GET", "/v1.41/services/abc/logs", (False, False)),
        ("GET", "/v1.41/secrets", (False, False)),
        ("GET", "/v1.41/configs", (False, False)),
        ("GET", "/v1.41/images/json", (False, False)),
        ("GET", "/v1.41/containers/../images/json", (False, False)),
        ("GET", "/v1.41/containers/%2e%2e/json", (False, False)),
        ("GET", "/v1.41/containers/../json", (False, False)),
        ("GET", "//containers/json", (False, False)),
        ("GET", "/v1.41/containers/json/../../info", (False, False)),
        ("GET", "http://docker/version", (False, False)),
        ("GET", "/Version", (False, False)),
        ("GET", "/version?a=b c", (False, False)),
    ],
)
def test_rule(method: str, target: str, expected: tuple[bool, bool]) -> None:
    assert allowed(method, target) == expected


def test_strip_env() -> None:
    doc = {"Id": "x", "Config": {"Env": ["TOKEN=hunter2"], "Labels": {"a": "b"}}}
    assert json.loads(strip_env(json.dumps(doc).encode())) == {
        "Id": "x",
        "Config": {"Labels": {"a": "b"}},
    }
    with pytest.raises(ValueError):
        strip_env(b"not json")


def test_strip_env_from_service_and_task_lists() -> None:
    services = [{"Spec": {"TaskTemplate": {"ContainerSpec": {"Env": ["K=v"], "Image": "i"}}}}]
    tasks = [{"Spec": {"ContainerSpec": {"Env": ["K=v"], "Args": ["a"]}}}]
    assert json.loads(strip_env(json.dumps(services).encode())) == [
        {"Spec": {"TaskTemplate": {"ContainerSpec": {"Image": "i"}}}}
    ]
    assert json.loads(strip_env(json.dumps(tasks).encode())) == [
        {"Spec": {"ContainerSpec": {"Args": ["a"]}}}
    ]
    updated = [{"PreviousSpec": {"TaskTemplate": {"ContainerSpec": {"Env": ["OLD=secret"]}}}}]
    assert "secret" not in strip_env(json.dumps(updated).encode()).decode()


# -- through the filter, against the real engine ----------------------------------------------


def test_reads_pass_through(proxy: Filter, docker_client: Any, run_container: Any) -> None:
    status, headers, body = proxy.request("/_ping")
    assert (status, body) == (200, b"OK") and headers.get("Api-Version")
    assert proxy.request("/_ping", method="HEAD")[0] == 200
    assert proxy.json(f"{V}/version")["ApiVersion"] == docker_client.version()["ApiVersion"]
    assert proxy.json("/version")["Version"] == docker_client.version()["Version"]

    box = run_container()
    listed = proxy.json(f"{V}/containers/json?all=1&filters=" + quote(json.dumps({"id": [box.id]})))
    assert [c["Id"] for c in listed] == [box.id]  # the query string reached the engine
    assert proxy.json(f"{V}/containers/{box.id}/json")["Id"] == box.id
    assert proxy.json(f"/containers/{box.name}/json")["State"]["Running"] is True

    status, _, body = proxy.request(f"{V}/containers/gds-test-no-such-box/json")
    assert status == 404 and "no such container" in json.loads(body)["message"].lower()


def test_inspect_has_no_env(proxy: Filter, docker_client: Any, run_container: Any) -> None:
    secret = f"hunter-{secrets.token_hex(8)}"
    box = run_container(environment={"GDS_SECRET": secret})
    assert f"GDS_SECRET={secret}" in docker_client.api.inspect_container(box.id)["Config"]["Env"]
    for target in (f"{V}/containers/{box.id}/json", f"/containers/{box.name}/json?size=1"):
        status, headers, body = proxy.request(target)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert secret.encode() not in body
        doc = json.loads(body)
        assert "Env" not in doc["Config"] and doc["Config"]["Labels"]  # the rest is intact
        assert doc["NetworkSettings"]["Networks"]


def test_writes_are_refused_and_never_happen(
    proxy: Filter, docker_client: Any, run_container: Any
) -> None:
    box = run_container()
    name = f"gds-test-sp-create-{secrets.token_hex(4)}"
    create = json.dumps({"Image": box.image.id, "Labels": {"godoxy-streams-test": "1"}}).encode()
    exec_body = json.dumps({"Cmd": ["/echo", "--help"]}).encode()
    refused = [
        ("POST", f"{V}/containers/create?name={name}", create),
        ("POST", f"/containers/create?name={name}", create),
        ("DELETE", f"{V}/containers/{box.id}?force=1", None),
        ("POST", f"{V}/containers/{box.id}/exec", exec_body),
        ("POST", f"{V}/containers/{box.id}/stop?t=0", None),
        ("POST", f"{V}/containers/{box.id}/kill", None),
        ("POST", f"{V}/containers/{box.id}/pause", None),
        ("POST", f"{V}/containers/{box.id}/rename?name={name}", None),
        ("PUT", f"{V}/containers/{box.id}/archive?path=/tmp", b"x"),
        ("GET", f"{V}/containers/{box.id}/logs?stdout=1", None),
        ("GET", f"{V}/containers/{box.id}/archive?path=/etc", None),
        ("GET", f"{V}/containers/{box.id}/export", None),
        ("GET", f"{V}/containers/{box.id}/json/../logs", None),
        ("GET", f"{V}/containers/{box.id}/attach/ws?stream=1", None),
        ("GET", f"{V}/secrets", None),
        ("POST", f"{V}/services/create", b"{}"),
        ("GET", f"{V}/images/json", None),
        ("POST", f"{V}/images/create?fromImage=busybox", None),
        ("GET", f"{V}/containers/%2e%2e/images/json", None),
    ]
    for method, target, body in refused:
        status, headers, answer = proxy.request(target, method=method, body=body)
        assert status == 403, (method, target, status, answer)
        assert "not allowed" in json.loads(answer)["message"]
    assert proxy.request(f"{V}/version", body=b"{}")[0] == 400  # a GET with a body
    assert docker_client.containers.list(all=True, filters={"name": name}) == []
    box.reload()
    assert box.status == "running" and box.name.startswith("gds-test-")
    assert not docker_client.api.inspect_container(box.id).get("ExecIDs")
    assert proxy.log().count("denied") == len(refused) + 1


def test_events_stream_live(proxy: Filter, run_container: Any) -> None:
    token = secrets.token_hex(6)
    filters = {"label": [f"gds-sp-events={token}"], "type": ["container"], "event": ["start"]}
    conn = UnixHTTPConnection(proxy.path, timeout=20)
    try:
        conn.request("GET", f"{V}/events?filters=" + quote(json.dumps(filters)))
        response = conn.getresponse()  # the headers come before any event: nothing is buffered
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        box = run_container(labels={"gds-sp-events": token})
        event = json.loads(response.readline())
        assert (event["Type"], event["Action"], event["Actor"]["ID"]) == (
            "container",
            "start",
            box.id,
        )
        box.restart(timeout=0)  # a second start: the stream stays open and keeps flowing
        assert json.loads(response.readline())["Action"] == "start"
    finally:
        conn.close()


def test_socket_mode(start_filter: Callable[..., Filter]) -> None:
    assert stat.S_IMODE(start_filter().path.stat().st_mode) == 0o660
    assert stat.S_IMODE(start_filter("--mode", "0600").path.stat().st_mode) == 0o600


def test_daemon_runs_through_the_filter(proxy: Filter, run_container: Any, tmp_path: Path) -> None:
    ns = unique_namespace()
    port = free_port("tcp")
    daemon = DaemonProcess(tmp_path, "--docker", proxy.url, namespace=ns).start()
    try:
        box = run_container(labels={f"{ns}.echo.port": f"{port}:7"})
        eventually(lambda: tcp_connectable("127.0.0.1", port), what="listener through the filter")
        assert tcp_exchange("127.0.0.1", port, b"through the filter") == b"through the filter"
        route = daemon.route("echo")
        assert route is not None and route["state"] == "running"
        box.remove(force=True)
        eventually(
            lambda: not tcp_connectable("127.0.0.1", port, timeout=0.5), what="listener closed"
        )
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-4000:]
    assert "denied" not in proxy.log(), proxy.log()  # the daemon needs nothing else
