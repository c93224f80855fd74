"""GoDoxy's documented stream examples through a live daemon: a sample of the compatibility
corpus (tests/compat: its stream README's labels and routes files, the wiki's TCP and UDP
examples, ``providers.example.yml``'s stream entry) is brought up as its user would (the
case's labels on compose services, or its routes file), ``check`` predicts the routes, the
real daemon serves them, and traffic flows on every port ``check`` predicted, to the
container (or address) the route names.

Each case has a network namespace of its own, a helper container's, and the daemon runs in
it (``nsenter``): the examples' fixed ports (2222, 443, 5353) never meet another listener of
this machine. The helper's echo server is the routes files' loopback target (``127.0.0.1:22``);
a second echo container on the test's network holds the addresses the files name
(``10.0.0.3``, ``100.64.0.10``, added to its interface; the helper routes them to it), so no
packet leaves the test's containers. Labels keep their text; only the namespace ``proxy``
becomes the test's.

Not served here: the stream README's ``dns-proxy`` (``53:53`` to ``localhost``, also in its
top-level layout case). It forwards a port to the same port of the same host, and a listener
on ``0.0.0.0:53`` and a DNS server on ``127.0.0.1:53`` cannot both be bound (in GoDoxy neither:
unicast UDP sockets do not share ports); ``tests/compat`` checks it.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from godoxy_streams.model import RouteSpec
from tests.compat.corpus import Case, compose_document, load_cases, run_case
from tests.daemon_kit import DaemonProcess
from tests.docker.compose_kit import ComposeProject
from tests.docker.kit import container_ip, whoami_udp
from tests.helpers import eventually, tcp_exchange

SAMPLE = (
    "stream_readme::Docker labels",
    "stream_readme::routes file/ssh-proxy",
    "stream_readme::routes file/site2",
    "wiki_examples::TCP Forwarding",
    "wiki_examples::UDP forwarding in the same form",
    "wiki_configuring_routes::Index-Based Alias Configuration, as streams on FQDN aliases",
    "wiki_configuring_routes::Shortcuts/every plural HTTP shortcut beside stream routes",
    "wiki_configuring_routes::Stream Properties/port default with one exposed port",
    "providers_example::ssh-with-proxy-protocol",
)
CASES = {case.id: case for case in load_cases() if case.id in SAMPLE}
PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
HOST_TAG, FAR_TAG = "daemon-host", "far-target"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nsenter needs root")


def test_the_sample_is_in_the_corpus() -> None:
    assert sorted(CASES) == sorted(SAMPLE)
    assert all(not case.ours.get("errors") for case in CASES.values())


def echo_ports(routes: list[RouteSpec]) -> list[str]:
    """The echo server's arguments for these routes' targets."""
    args = []
    for proto, port in sorted({(r.proto, r.target_port) for r in routes}):
        args += ["-t" if proto == "tcp" else "-u", str(port)]
    return args or ["-t", "7"]


def in_namespace(pid: int, *command: str) -> None:
    """Run ``command`` in the network namespace of process ``pid`` (a container's)."""
    subprocess.run(["nsenter", "-t", str(pid), "-n", "--", *command], check=True, timeout=30)


def label_services(case: Case, routes: list[RouteSpec], image: str, ns: str) -> dict[str, Any]:
    """The case's compose services on the echo image, serving the ports its routes dial."""
    services: dict[str, Any] = compose_document(case.entry)["services"]
    for name, service in services.items():
        service["image"] = image
        service["command"] = [*echo_ports(routes), "--tag", name]
        service["labels"] = {
            (f"{ns}." + key[len("proxy.") :] if key.startswith("proxy.") else key): value
            for key, value in (service.get("labels") or {}).items()
        }
    return services


def hello(host: str, route: Served) -> str:
    """Who answered through ``route``: the echo server's tag, or ``proxied`` when the route
    sent a PROXY v2 header (the echo server returns it before the payload)."""
    if route.spec.proto == "udp":
        return whoami_udp(host, route.port, timeout=2)
    reply = tcp_exchange(host, route.port, b"whoami\n")
    if route.spec.proxy_protocol == "v2":
        assert reply.startswith(PROXY_V2) and reply.endswith(b"whoami\n"), reply
        return "proxied"
    return reply.decode().rstrip("\n")


@dataclass(frozen=True)
class Served:
    """A route ``check`` predicted, with the port the daemon bound for it."""

    spec: RouteSpec
    port: int


@pytest.mark.parametrize("case_id", SAMPLE)
def test_a_documented_example_serves_traffic_where_check_said(
    case_id: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    test_image: str,
    run_container: Any,
    make_network: Any,
    ns: str,
) -> None:
    case = CASES[case_id]
    predicted = run_case(case, tmp_path)
    assert predicted.exit_code == 0 and predicted.routes, predicted.report
    files = [r for r in predicted.routes if r.origin.kind == "file"]
    labelled = [r for r in predicted.routes if r.origin.kind != "file"]
    near = [r for r in files if ipaddress.ip_address(r.target_host).is_loopback]
    far = [r for r in files if r not in near]
    network = make_network("live")
    helper = run_container(command=[*echo_ports(near), "--tag", HOST_TAG], network=network)
    pid = int(helper.attrs["State"]["Pid"])
    if far:
        target = run_container(command=[*echo_ports(far), "--tag", FAR_TAG], network=network)
        for host in sorted({r.target_host for r in far}):
            in_namespace(
                target.attrs["State"]["Pid"], "ip", "addr", "add", f"{host}/32", "dev", "eth0"
            )
            in_namespace(
                pid, "ip", "route", "add", f"{host}/32", "via", container_ip(target, network)
            )
    args: list[str] = []
    if case.kind == "routes_file":
        (tmp_path / "routes.yml").write_text(case.entry["file"])
        args = ["--no-docker", "--routes", str(tmp_path / "routes.yml")]
    project = None
    if labelled:
        services = label_services(case, labelled, test_image, ns)
        project = ComposeProject(
            docker_client, tmp_path, services, hint="live", network=network.name
        )
    daemon = DaemonProcess(
        tmp_path,
        *args,
        namespace=ns,
        prefix=["nsenter", "-t", str(pid), "-n", "--"],
        api_host=container_ip(helper, network),
        default_bind=None,
    )
    try:
        if project is not None:
            project.up()
        daemon.start()
        served = eventually(lambda: bound(daemon, predicted.routes), timeout=20, what="routes up")
        where = container_ip(helper, network)
        for route in served:
            expected = route.spec.origin.name
            if route.spec in files:
                expected = HOST_TAG if route.spec in near else FAR_TAG
            if route.spec.proxy_protocol == "v2":
                expected = "proxied"
            assert hello(where, route) == expected, (route.spec.alias, route.port)
    finally:
        code = daemon.stop()
        if project is not None:
            project.down()
    assert code == 0, daemon.log()[-4000:]


def bound(daemon: DaemonProcess, predicted: list[RouteSpec]) -> list[Served]:
    """Each predicted route with its bound port, once the daemon runs every one of them (on
    the port ``check`` named, or, for a route whose port is picked, any)."""
    rows = {(r["alias"], r["scheme"]): r for r in daemon.routes()["routes"]}
    served = []
    for spec in predicted:
        row = rows.get((spec.alias, spec.scheme))
        if row is None or row["state"] != "running":
            return []
        assert spec.listen_port in (None, row["listen_port"]), (spec, row)
        served.append(Served(spec, row["listen_port"]))
    return served
