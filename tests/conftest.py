"""Top-level test configuration: the Docker engine gate.

Tests that need a Docker engine request the session fixture `docker_client` (a docker-py
client that answered a ping) or carry `@pytest.mark.docker` (which requests it for
them). Without an engine they skip, unless the environment says REQUIRE_DOCKER=1: then
they fail, so CI cannot go green by skipping everything.

The skip-or-fail rule itself (`docker_required`, `docker_unavailable`) and the generic
helpers (polling with deadlines, ports, TCP/UDP clients) live in tests/helpers.py.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .helpers import docker_unavailable

if TYPE_CHECKING:
    from docker import DockerClient

DOCKER_PING_TIMEOUT = 10
DOCKER_TIMEOUT = 120


def _connect() -> tuple[DockerClient | None, str]:
    """A pinged docker-py client, or None and the reason why not."""
    try:
        import docker
    except ImportError as e:
        return None, f"docker-py is not installed ({e})"
    # docker-py leaks the socket of a failed unix-socket connect; with warnings as errors
    # its ResourceWarning would surface later as an unrelated failure, so finalise it here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client = None
        try:
            client = docker.from_env(timeout=DOCKER_PING_TIMEOUT)
            client.ping()
        except Exception as e:  # DockerException, requests errors, odd DOCKER_HOST values
            if client is not None:
                client.close()
            reason = f"no Docker engine answers ({e})"
        else:
            client.api.timeout = DOCKER_TIMEOUT  # answered: allow slow calls from now on
            return client, ""
        gc.collect()
    return None, reason


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """A docker-py client of the engine from the environment (DOCKER_HOST etc.), pinged."""
    client, reason = _connect()
    if client is None:
        docker_unavailable(reason)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _docker_marker_gate(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.docker` tests go through the engine gate even without the fixture."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_client")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use `docker_client` (directly or not) carry the `docker` marker."""
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            if item.get_closest_marker("docker") is None:
                item.add_marker(pytest.mark.docker)
