"""Fixtures of the Docker test kit (see kit.py): the echo image and the factories.

- `test_image` (session): tag of the local echo image, built on first use.
- `run_container(labels=None, command=None, *, name=None, network=None, healthcheck=None,
  image=None, wait_ready=None, ready_timeout=10.0, **create_kwargs)`: a started container;
  all of a test's containers are force-removed at its teardown, pass or fail.
- `make_network(name=None, *, labels=None, driver="bridge", **create_kwargs)`: a network;
  removed at teardown (after the test's containers).
- `ns`: a fresh label namespace; `daemon(*args, wait_healthy=True)`: a started
  `godoxy-streams run` process reading that namespace, stopped (and asserted to exit 0)
  at teardown.
- A session-scoped sweep, before and after the session, removes kit objects that crashed
  runs left behind (never those of a live concurrent session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from ..daemon_kit import DaemonProcess, unique_namespace
from ..helpers import docker_unavailable
from . import kit

Daemon = Callable[..., DaemonProcess]


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient) -> str:
    try:
        return kit.ensure_image(docker_client)
    except kit.KitUnavailable as e:
        docker_unavailable(f"the echo test image cannot be built: {e}")


@pytest.fixture(scope="session")
def kit_sweep(docker_client: docker.DockerClient) -> Iterator[None]:
    kit.sweep(docker_client)
    yield
    kit.sweep(docker_client, own=True)


@pytest.fixture
def make_network(
    docker_client: docker.DockerClient, kit_sweep: None
) -> Iterator[kit.NetworkFactory]:
    factory = kit.NetworkFactory(docker_client)
    yield factory
    factory.cleanup()


@pytest.fixture
def run_container(
    docker_client: docker.DockerClient,
    test_image: str,
    make_network: kit.NetworkFactory,  # set up first, so torn down after the containers
    kit_sweep: None,
) -> Iterator[kit.ContainerFactory]:
    factory = kit.ContainerFactory(docker_client, test_image)
    yield factory
    factory.cleanup()


@pytest.fixture
def ns() -> str:
    return unique_namespace()


@pytest.fixture
def daemon(tmp_path: Path, ns: str, docker_client: Any) -> Iterator[Daemon]:
    started: list[DaemonProcess] = []

    def start(*args: str, wait_healthy: bool = True) -> DaemonProcess:
        process = DaemonProcess(tmp_path, *args, namespace=ns)
        started.append(process)
        return process.start(wait_healthy=wait_healthy)

    yield start
    for process in started:
        code = process.stop()
        assert code == 0, f"daemon exited {code}\n{process.log()[-4000:]}"
