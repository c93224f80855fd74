"""``socket-proxy --allow-lifecycle``: start/stop/pause/unpause/kill pass only for containers
under sleep/wake control (a valid ``<ns>.idle_timeout`` label, or named in the ``depends_on``
of one), only with the parameters those calls take; everything else stays 403 and never
reaches the engine; and the daemon puts a container to sleep and wakes it through it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from godoxy_streams.sources.lifecycle_filter import lifecycle_call
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.docker.conftest import kit_sweep as kit_sweep  # noqa: F401  (the kit's fixtures)
from tests.docker.conftest import make_network as make_network  # noqa: F401
from tests.docker.conftest import run_container as run_container  # noqa: F401
from tests.docker.conftest import test_image as test_image  # noqa: F401
from tests.docker.test_sleep import asleep
from tests.helpers import eventually, free_port, tcp_exchange
from tests.test_socket_proxy import Filter
from tests.test_socket_proxy import short_dir as short_dir  # noqa: F401
from tests.test_socket_proxy import start_filter as start_filter  # noqa: F401

V = "/v1.41"


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("POST", f"{V}/containers/abc/start", ("start", ())),
        ("POST", "/containers/my_box.1/stop?t=5", ("stop", (("t", "5"),))),
        (
            "POST",
            f"{V}/containers/abc/stop?t=2&signal=SIGINT",
            ("stop", (("t", "2"), ("signal", "SIGINT"))),
        ),
        ("POST", f"{V}/containers/abc/kill?signal=SIGKILL", ("kill", (("signal", "SIGKILL"),))),
        ("POST", f"{V}/containers/abc/kill?signal=9", ("kill", (("signal", "9"),))),
        ("POST", f"{V}/containers/abc/pause", ("pause", ())),
        ("POST", f"{V}/containers/abc/unpause", ("unpause", ())),
        ("GET", f"{V}/containers/abc/start", None),
        ("POST", f"{V}/containers/abc/restart", None),
        ("POST", f"{V}/containers/abc/exec", None),
        ("POST", f"{V}/containers/create", None),
        ("POST", f"{V}/containers/abc/start?detachKeys=ctrl-x", None),
        ("POST", f"{V}/containers/abc/stop?t=5&t=6", None),
        ("POST", f"{V}/containers/abc/stop?t=soon", None),
        ("POST", f"{V}/containers/abc/kill?signal=%3Bx", None),
        ("POST", f"{V}/containers/abc/pause?x", None),
        ("POST", f"{V}/containers/../images/start", None),
        ("POST", f"{V}/containers/abc/start/../../x", None),
    ],
)
def test_lifecycle_rule(
    method: str, target: str, expected: tuple[str, tuple[tuple[str, str], ...]] | None
) -> None:
    call = lifecycle_call(method, target)
    assert (None if call is None else (call.action, call.params)) == expected


def status(client: Any, box: Any) -> str:
    return str(client.api.inspect_container(box.id)["State"]["Status"])


def test_lifecycle_calls_pass_only_for_sleep_wake_containers(
    start_filter: Callable[..., Filter], run_container: Any, docker_client: Any
) -> None:
    ns = unique_namespace()
    proxy = start_filter("--allow-lifecycle", "--namespace", ns)
    db = run_container()
    app = run_container(labels={f"{ns}.idle_timeout": "1m", f"{ns}.depends_on": db.name})
    plain = run_container(labels={f"{ns}.a.port": "2222:7"})
    off = run_container(labels={f"{ns}.idle_timeout": "0"})  # zero: no sleep/wake

    for box in (plain, off):
        for action in ("stop?t=1", "kill", "pause"):
            code, _, answer = proxy.request(f"{V}/containers/{box.id}/{action}", method="POST")
            assert code == 403, (box.name, action, answer)
            assert "idle_timeout" in json.loads(answer)["message"]
        assert status(docker_client, box) == "running"

    steps = [
        ("pause", "paused"),
        ("unpause", "running"),
        ("stop?t=1", "exited"),
        ("start", "running"),
    ]
    for action, state in steps:
        code, _, answer = proxy.request(f"/containers/{app.name}/{action}", method="POST")
        assert code in (204, 304), (action, code, answer)
        assert status(docker_client, app) == state
    assert proxy.request(f"{V}/containers/{app.id}/kill?signal=SIGKILL", method="POST")[0] == 204
    eventually(lambda: status(docker_client, app) == "exited", what="killed")
    assert (
        proxy.request(f"{V}/containers/{db.id}/stop?t=1", method="POST")[0] == 204
    )  # a dependency
    assert status(docker_client, db) == "exited"

    refused = [
        f"{V}/containers/{app.id}/restart",
        f"{V}/containers/{app.id}/start?detachKeys=ctrl-x",
        f"{V}/containers/{app.id}/exec",
    ]
    for target in refused:
        assert (
            proxy.request(target, method="POST", body=b"{}" if "exec" in target else None)[0] == 403
        )
    assert proxy.request(f"{V}/containers/{app.id}/start", method="POST", body=b"{}")[0] == 403
    assert status(docker_client, app) == "exited"
    assert proxy.request(f"{V}/containers/gds-test-no-such-box/start", method="POST")[0] == 404


def test_without_the_flag_lifecycle_calls_are_refused(
    start_filter: Callable[..., Filter], run_container: Any, docker_client: Any
) -> None:
    ns = unique_namespace()
    proxy = start_filter("--namespace", ns)
    app = run_container(labels={f"{ns}.idle_timeout": "1m"})
    assert proxy.request(f"{V}/containers/{app.id}/stop?t=1", method="POST")[0] == 403
    assert status(docker_client, app) == "running"


def test_the_daemon_sleeps_and_wakes_through_the_filter(
    start_filter: Callable[..., Filter], run_container: Any, tmp_path: Path
) -> None:
    ns = unique_namespace()
    proxy = start_filter("--allow-lifecycle", "--namespace", ns)
    port = free_port()
    daemon = DaemonProcess(tmp_path, "--docker", proxy.url, namespace=ns).start()
    try:
        labels = {
            f"{ns}.echo.port": f"{port}:7",
            f"{ns}.idle_timeout": "1s",
            f"{ns}.stop_timeout": "1s",
        }
        box = run_container(labels=labels)

        asleep(daemon, box, "echo", ("exited",))
        assert tcp_exchange("127.0.0.1", port, b"wake up", 60) == b"wake up"
        box.reload()
        assert box.status == "running"
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-4000:]
    assert "denied" not in proxy.log(), proxy.log()
    assert (
        f"/containers/{box.id}/stop" in proxy.log()
        or f"/containers/{box.id[:12]}/stop" in proxy.log()
    )
