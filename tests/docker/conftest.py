"""Fixtures of the Docker test kit (see kit.py): the echo image and the factories.

- `test_image` (session): tag of the local echo image, built on first use.
- `run_container(labels=None, command=None, *, name=None, network=None, healthcheck=None,
  image=None, wait_ready=None, ready_timeout=10.0, **create_kwargs)`: a started container;
  all of a test's containers are force-removed at its teardown, pass or fail.
- `make_network(name=None, *, labels=None, driver="bridge", **create_kwargs)`: a network;
  removed at teardown (after the test's containers).
- A session-scoped sweep, before and after the session, removes kit objects that crashed
  runs left behind (never those of a live concurrent session).
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from ..helpers import docker_unavailable
from . import kit


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
