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
- `fast_daemons`: starts the real daemon (`godoxy-streams run --fast-path nftables`) on the
  test's label namespace; at teardown every daemon is stopped with SIGTERM (exit 0 asserted
  unless the test killed it), what a killed one left is removed, and the table and the
  DOCKER-USER rule are asserted gone (the chain as it was before).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker.models.containers import Container

from godoxy_streams.runtime.kernel.docker_user import COMMENT
from godoxy_streams.runtime.kernel.nft import availability

from ..daemon_kit import DaemonProcess
from ..docker import kit as docker_kit
from ..docker.conftest import kit_sweep, make_network, ns, run_container, test_image
from ..helpers import docker_unavailable
from . import kit

__all__ = ["kit_sweep", "make_network", "ns", "run_container", "test_image"]  # the kit's

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


class FastDaemons:
    """Daemons with the fast path on, on one label namespace (see the module doc)."""

    def __init__(self, workdir: Path, namespace: str) -> None:
        self.workdir, self.namespace = workdir, namespace
        self.started: list[DaemonProcess] = []
        self.killed: list[DaemonProcess] = []

    def start(self, *args: str, wait_healthy: bool = True) -> DaemonProcess:
        process = DaemonProcess(
            self.workdir, "--fast-path", "nftables", *args, namespace=self.namespace
        )
        self.started.append(process)
        return process.start(wait_healthy=wait_healthy)

    def kill(self, process: DaemonProcess) -> None:
        """SIGKILL: the daemon leaves its table and rule behind."""
        assert process.proc is not None
        process.proc.kill()
        process.proc.wait(timeout=10)
        self.killed.append(process)

    def stop_all(self) -> list[str]:
        """Stop every daemon; the failures (exit code and log tail)."""
        failures = []
        for process in self.started:
            code = process.stop()
            if code != 0 and process not in self.killed:
                failures.append(f"daemon exited {code}\n{process.log()[-4000:]}")
        return failures


@pytest.fixture
def fast_daemons(
    kernel_host: None, tmp_path: Path, ns: str, docker_client: object
) -> Iterator[FastDaemons]:
    before = _without_ours(kit.docker_user_rules())
    daemons = FastDaemons(tmp_path, ns)
    try:
        yield daemons
    finally:
        failures = daemons.stop_all()
        left = [t for t in kit.nft_tables() if "godoxy_streams" in t]
        harness = kit.KernelHarness()
        try:
            harness.stop(kill=True)  # what a killed daemon left (nothing after a clean stop)
        finally:
            harness.close()
    assert not failures, failures
    assert not left or daemons.started[-1] in daemons.killed, f"a clean stop left {left}"
    assert kit.docker_user_rules() == before
