"""Docker JSON -> ContainerInfo, for both the list and the inspect endpoints."""

from __future__ import annotations

import pytest

from godoxy_streams.containers import PortFact, from_inspect, from_list_entry, signal_number

INSPECT = {
    "Id": "abc123",
    "Name": "/shop-web-1",
    "Created": "2026-11-24T16:18:42.123456789Z",
    "State": {"Status": "running", "Paused": False, "Health": {"Status": "starting"}},
    "Config": {
        "Image": "echo:1",
        "Labels": {"com.docker.compose.service": "web", "com.docker.compose.project": "shop"},
        "ExposedPorts": {"22/tcp": {}, "53/udp": {}},
    },
    "HostConfig": {"NetworkMode": "shop_default"},
    "NetworkSettings": {
        "Networks": {
            "shop_default": {"IPAddress": "172.20.0.3"},
            "v6": {"IPAddress": "", "GlobalIPv6Address": "fd00::3"},
        },
        "Ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "2222"}], "53/udp": None},
    },
}


def test_from_inspect() -> None:
    info = from_inspect(INSPECT)
    assert (info.id, info.name, info.state, info.health) == (
        "abc123",
        "shop-web-1",
        "running",
        "starting",
    )
    assert info.networks == {"shop_default": "172.20.0.3", "v6": "fd00::3"}
    assert info.ports == (PortFact(22, "tcp", 2222), PortFact(53, "udp", None))
    assert (info.compose_project, info.compose_service) == ("shop", "web")
    assert info.created == 1795537122.0
    assert info.running and not info.host_network


def test_from_inspect_paused_and_host_network() -> None:
    raw = {
        **INSPECT,
        "State": {"Status": "paused", "Paused": True},
        "HostConfig": {"NetworkMode": "host"},
    }
    info = from_inspect(raw)
    assert info.state == "paused" and not info.running and info.host_network


def test_from_list_entry() -> None:
    raw = {
        "Id": "def456",
        "Names": ["/db"],
        "Created": 1795537122,
        "State": "running",
        "Status": "Up 3 minutes (healthy)",
        "Labels": {"proxy.aliases": "db"},
        "Ports": [
            {"PrivatePort": 5432, "Type": "tcp"},
            {"PrivatePort": 5432, "Type": "tcp", "PublicPort": 15432, "IP": "0.0.0.0"},
        ],
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.4"}}},
    }
    info = from_list_entry(raw)
    assert (info.name, info.health, info.created) == ("db", "healthy", 1795537122.0)
    assert info.ports == (PortFact(5432, "tcp", 15432),)
    assert info.networks == {"bridge": "172.17.0.4"}


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGQUIT", 3), ("QUIT", 3), ("sigint", 2), ("3", 3), ("SIGTERM", None), ("15", None),
     ("", None), (None, None), ("SIGNOPE", None)],
)  # fmt: skip
def test_stop_signal_spellings(text: object, number: int | None) -> None:
    assert signal_number(text) == number


def test_inspect_reads_the_stop_signal() -> None:
    info = from_inspect({"Id": "x", "Name": "/n", "Config": {"StopSignal": "SIGQUIT"}})
    assert info.stop_signal == 3
    assert from_inspect({"Id": "x", "Name": "/n", "Config": {}}).stop_signal is None
