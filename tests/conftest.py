"""Top-level test configuration: the Docker engine gate.

Tests that need a Docker engine request the session fixture `docker_client` (a docker-py
client that answered a ping) or carry `@pytest.mark.docker` (which requests it for
them). Without an engine they skip, unless the environment says REQUIRE_DOCKER=1: then
they fail, so CI cannot go green by skipping everything.

The skip-or-fail rule itself (`docker_required`, `docker_unavailable`) and the generic
helpers (polling with deadlines, ports, TCP/UDP clients) live in tests/helpers.py.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import AsyncIterator, Iterator
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


LEAK_GRACE = 2.0
"""Seconds a test's leftover tasks get to finish on their own before they count as leaked."""


@pytest.fixture
async def no_task_leaks() -> AsyncIterator[None]:
    """Fails a test that leaves asyncio tasks running behind it (every async test has it):
    whatever a test starts, it must stop. Tasks still finishing (a close in progress) get
    ``LEAK_GRACE`` seconds; what is left then is cancelled and named in the failure."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEAK_GRACE
    leaked: set[asyncio.Task[object]] = set()
    while True:
        leaked = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
        if not leaked or loop.time() >= deadline:
            break
        await asyncio.wait(leaked, timeout=deadline - loop.time())
    if leaked:
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        names = sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked)
        pytest.fail(f"the test left {len(leaked)} asyncio task(s) running: {names}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use `docker_client` (directly or not) carry the `docker` marker; async tests
    get the `no_task_leaks` check."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            fixtures = getattr(item, "fixturenames", None)
            if fixtures is not None and "no_task_leaks" not in fixtures:
                fixtures.insert(0, "no_task_leaks")
        if "docker_client" in getattr(item, "fixturenames", ()):
            if item.get_closest_marker("docker") is None:
                item.add_marker(pytest.mark.docker)
