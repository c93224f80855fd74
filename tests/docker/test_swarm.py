"""Swarm end to end on a single-node swarm of this machine's engine (advertised on 127.0.0.1,
left again at teardown): a labelled service with a host-mode published port gets a route that
carries traffic, follows the service's removal, and reports an unpublished port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from docker.types import EndpointSpec

from tests.docker.conftest import Daemon
from tests.docker.kit import kit_labels, unique_name, whoami_tcp
from tests.helpers import eventually, free_port

LOCAL = "127.0.0.1"


@pytest.fixture
def swarm(docker_client: docker.DockerClient) -> Iterator[Any]:
    """A single-node swarm (joined here and left at teardown unless it was active before);
    yields a service factory whose services are removed at teardown."""
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    joined = state != "active"
    networks_before = {n.name for n in docker_client.networks.list()}
    if joined:
        docker_client.swarm.init(advertise_addr="127.0.0.1")
    made: list[Any] = []

    def create(image: str, labels: dict[str, str], args: list[str], ports: list[dict[str, Any]]):
        service = docker_client.services.create(
            image,
            args=args,
            name=unique_name("swarm"),
            labels=kit_labels(labels),
            endpoint_spec=EndpointSpec(ports=ports),
        )
        made.append(service)
        return service

    try:
        yield create
    finally:
        for service in made:
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
        if joined:
            docker_client.swarm.leave(force=True)
            for network in docker_client.networks.list():
                if network.name not in networks_before and network.name == "docker_gwbridge":
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()


def host_port(published: int) -> dict[str, Any]:
    return {"Protocol": "tcp", "TargetPort": 7, "PublishedPort": published, "PublishMode": "host"}


def test_a_labelled_service_gets_a_route(
    daemon: Daemon, swarm: Any, test_image: str, ns: str
) -> None:
    port, published = free_port(), free_port()
    d = daemon()
    labels = {f"{ns}.aliases": "sw", f"{ns}.sw.port": f"{port}:7"}
    service = swarm(test_image, labels, ["--tag", "swarmy"], [host_port(published)])
    eventually(
        lambda: (d.route("sw") or {}).get("state") == "running",
        timeout=30,
        what="the service's route",
    )
    assert whoami_tcp(LOCAL, port) == "swarmy"
    route = d.route("sw")
    assert route is not None and route["engine"] == "local:swarm"
    assert (route["target_host"], route["target_port"]) == ("127.0.0.1", published)
    assert route["container"].startswith(service.name + ".")

    unpublished = swarm(
        test_image,
        {f"{ns}.aliases": "np", f"{ns}.np.port": f"{free_port()}:7"},
        ["--tag", "np"],
        [],
    )
    eventually(
        lambda: any(e["alias"] == "np" for e in d.routes()["errors"]),
        timeout=30,
        what="the unpublished port reported",
    )
    assert unpublished.name

    service.remove()
    eventually(lambda: d.route("sw") is None, timeout=30, what="the route removed")
