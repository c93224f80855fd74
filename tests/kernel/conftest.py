"""Fixtures of the kernel fast-path tests (see kit.py).

- `kernel_host` (session): the gate. These tests need root, `ip`, `nft`, `conntrack` and a
  kernel with the nftables features the renderer uses; without them they skip, and under
  REQUIRE_DOCKER=1 they fail. It holds a host-wide lock for the session (the tests own the
  table `inet godoxy_streams`) and sweeps namespaces that crashed runs left behind.
- `client_ns`: a fresh client namespace, deleted at teardown, pass or fail.
- `kernel`: a started KernelHarness; at teardown its flows are killed, the table and the
  DOCKER-USER rule removed, and both are asserted gone (the chain as it was before).
- `echo(tag)`: an echo container of the Docker kit (TCP and UDP echo on port 7, `whoami`
  answers `tag`) on one bridge network of the test; removed at teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from docker.models.containers import Container

from godoxy_streams.runtime.kernel.docker_user import COMMENT
from godoxy_streams.runtime.kernel.nft import availability

from ..docker import kit as docker_kit
from ..docker.conftest import kit_sweep, make_network, run_container, test_image
from ..helpers import docker_unavailable
from . import kit

__all__ = ["kit_sweep", "make_network", "run_container", "test_image"]  # the kit's fixtures

Echo = Callable[[str], tuple[Container, str]]


def _unready() -> str | None:
    """Why the kernel tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the kernel tests need root (network namespaces, nftables, conntrack)"
    missing = [tool for tool in ("ip", "nft", "conntrack") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install iproute2 nftables conntrack)"
    return asyncio.run(availability())


@pytest.fixture(scope="session")
def kernel_host() -> Iterator[None]:
    reason = _unready()
    if reason is not None:
        docker_unavailable(f"the kernel fast path cannot be tested here: {reason}")
    with kit.exclusive():
        kit.sweep()
        yield
        kit.sweep()


@pytest.fixture
def client_ns(kernel_host: None) -> Iterator[kit.ClientNamespace]:
    with kit.ClientNamespace() as ns:
        yield ns


def _without_ours(rules: dict[str, str]) -> dict[str, str]:
    return {
        tool: "".join(line for line in text.splitlines(True) if COMMENT not in line)
        for tool, text in rules.items()
    }


@pytest.fixture
def kernel(kernel_host: None) -> Iterator[kit.KernelHarness]:
    before = _without_ours(kit.docker_user_rules())
    harness = kit.KernelHarness()
    try:
        harness.start()
        yield harness
    finally:
        try:
            harness.stop(kill=True)
        finally:
            harness.close()
    assert not [t for t in kit.nft_tables() if "godoxy_streams" in t], kit.nft_tables()
    assert kit.docker_user_rules() == before


@pytest.fixture
def echo(
    run_container: docker_kit.ContainerFactory, make_network: docker_kit.NetworkFactory
) -> Echo:
    network = make_network("kernel")

    def start(tag: str) -> tuple[Container, str]:
        container = run_container(command=["-t", "7", "-u", "7", "--tag", tag], network=network)
        return container, docker_kit.container_ip(container, network)

    return start
