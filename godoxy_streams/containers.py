"""Container facts: the one place Docker's JSON turns into a frozen ``ContainerInfo``.

Nothing past this module sees a raw Docker dict. Both the list endpoint's entries and the
inspect endpoint's documents are accepted.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass(frozen=True)
class PortFact:
    """A container port: ``private``/``proto`` inside, ``public`` on the host when published."""

    private: int
    proto: str
    public: int | None = None


@dataclass(frozen=True)
class ContainerInfo:
    """What the label grammar and the reconciler need to know of one container."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "running"
    health: str | None = None
    created: float = 0.0
    networks: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "bridge"
    ports: tuple[PortFact, ...] = ()
    image: str = ""
    engine: str = "local"
    node_address: str | None = None  # a Swarm task: dial this node at published ports
    stop_signal: int | None = None  # the image's StopSignal when not SIGTERM (inspect only)
    exit_code: int | None = None  # of a container that is not running (inspect only)
    error: str = ""  # the engine's last error starting it (inspect only)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def compose_project(self) -> str:
        return self.labels.get(COMPOSE_PROJECT, "")

    @property
    def compose_service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE, "")

    @property
    def host_network(self) -> bool:
        return self.network_mode == "host"


def _port_facts(
    exposed: Mapping[str, Any] | None, bound: Mapping[str, Any] | None
) -> list[PortFact]:
    facts: dict[tuple[int, str], PortFact] = {}
    for spec in list(exposed or {}) + list(bound or {}):
        port, _, proto = spec.partition("/")
        if not port.isdigit():
            continue
        key = (int(port), proto or "tcp")
        public: int | None = None
        for binding in (bound or {}).get(spec) or []:
            host_port = str(binding.get("HostPort") or "")
            if host_port.isdigit():
                public = int(host_port)
                break
        if key not in facts or public is not None:
            facts[key] = PortFact(key[0], key[1], public)
    return sorted(facts.values(), key=lambda p: (p.private, p.proto))


def _health_of_status(status: str) -> str | None:
    for word in ("healthy", "unhealthy", "health: starting"):
        if f"({word})" in status:
            return "starting" if word == "health: starting" else word
    return None


def _strings(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels (or network names and addresses) as a dict of strings, interned: the same keys
    and many of the same values stand on every container, thousands of times at scale."""
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in (raw or {}).items()}


def parse_time(text: str) -> float:
    """Whole seconds since the epoch from Docker's RFC 3339 time; 0 if unreadable."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", text)
    if not match:
        return 0.0
    whole = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return whole.timestamp()  # whole seconds, as the list endpoint gives


def from_inspect(raw: Mapping[str, Any], *, engine: str = "local") -> ContainerInfo:
    """A ``ContainerInfo`` from a ``GET /containers/{id}/json`` document."""
    config = raw.get("Config") or {}
    state = raw.get("State") or {}
    settings = raw.get("NetworkSettings") or {}
    host_config = raw.get("HostConfig") or {}
    networks = {
        name: str((net or {}).get("IPAddress") or (net or {}).get("GlobalIPv6Address") or "")
        for name, net in (settings.get("Networks") or {}).items()
    }
    status = str(state.get("Status") or "")
    if state.get("Paused"):
        status = "paused"
    health = (state.get("Health") or {}).get("Status")
    return ContainerInfo(
        id=str(raw.get("Id", "")),
        name=str(raw.get("Name", "")).lstrip("/"),
        labels=_strings(config.get("Labels")),
        state=status,
        health=str(health) if health else None,
        created=parse_time(str(raw.get("Created", ""))),
        networks=networks,
        network_mode=str(host_config.get("NetworkMode") or "bridge"),
        ports=tuple(_port_facts(config.get("ExposedPorts"), settings.get("Ports"))),
        image=str(config.get("Image") or raw.get("Image") or ""),
        engine=engine,
        stop_signal=signal_number(config.get("StopSignal")),
        exit_code=None if state.get("Running") else _int_or_none(state.get("ExitCode")),
        error=str(state.get("Error") or ""),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def signal_number(text: object) -> int | None:
    """A signal's number from Docker's spelling ("SIGQUIT", "QUIT", "3"); None if unknown or
    SIGTERM (the default)."""
    name = str(text or "").strip().upper()
    if not name:
        return None
    if name.isdigit():
        number = int(name)
    else:
        try:
            number = signal.Signals[name if name.startswith("SIG") else "SIG" + name].value
        except KeyError:
            return None
    return None if number == signal.SIGTERM else number


def from_list_entry(raw: Mapping[str, Any], *, engine: str = "local") -> ContainerInfo:
    """A ``ContainerInfo`` from one entry of ``GET /containers/json``."""
    facts: dict[tuple[int, str], PortFact] = {}
    for port in raw.get("Ports") or []:
        key = (int(port.get("PrivatePort", 0)), str(port.get("Type") or "tcp"))
        public = port.get("PublicPort")
        if key not in facts or public:
            facts[key] = PortFact(key[0], key[1], int(public) if public else None)
    settings = raw.get("NetworkSettings") or {}
    networks = {
        name: str((net or {}).get("IPAddress") or (net or {}).get("GlobalIPv6Address") or "")
        for name, net in (settings.get("Networks") or {}).items()
    }
    names = raw.get("Names") or [""]
    created = raw.get("Created")
    return ContainerInfo(
        id=str(raw.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        labels=_strings(raw.get("Labels")),
        state=str(raw.get("State") or ""),
        health=_health_of_status(str(raw.get("Status") or "")),
        created=float(created) if isinstance(created, int | float) else 0.0,
        networks=networks,
        network_mode=str((raw.get("HostConfig") or {}).get("NetworkMode") or "bridge"),
        ports=tuple(sorted(facts.values(), key=lambda p: (p.private, p.proto))),
        image=str(raw.get("Image") or ""),
        engine=engine,
    )
