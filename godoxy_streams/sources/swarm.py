"""Swarm services as route sources: on a manager, every running task of a service becomes a
``ContainerInfo`` carrying the service's labels (compose ``deploy.labels``), so the label
grammar, pools and conflicts apply unchanged. Pure: Docker's JSON in, facts out.

A task is dialled at its node's address and the service's published port (host mode; the
routing mesh's virtual IPs need IPVS, which not every kernel has). Tasks of one service share
a compose-style project/service pair, so several replicas form one pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from godoxy_streams.containers import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    ContainerInfo,
    PortFact,
    parse_time,
)

STACK_NAMESPACE = "com.docker.stack.namespace"


def _ports(service: Mapping[str, Any]) -> tuple[PortFact, ...]:
    facts = []
    for port in (service.get("Endpoint") or {}).get("Ports") or []:
        target, published = port.get("TargetPort"), port.get("PublishedPort")
        if isinstance(target, int):
            public = published if isinstance(published, int) and published else None
            facts.append(PortFact(target, str(port.get("Protocol") or "tcp"), public))
    return tuple(sorted(facts, key=lambda p: (p.private, p.proto)))


def tasks_as_containers(
    services: Iterable[Mapping[str, Any]],
    tasks: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
    *,
    engine: str,
    namespace: str,
    fallback_address: str = "127.0.0.1",
) -> list[ContainerInfo]:
    """One ``ContainerInfo`` per task of a service that has labels in ``namespace``."""
    prefix = namespace.lower() + "."
    addresses = {}
    for node in nodes:
        addr = str((node.get("Status") or {}).get("Addr") or "")
        addresses[str(node.get("ID"))] = addr if addr and addr != "0.0.0.0" else fallback_address
    labelled = {}
    for service in services:
        labels = dict((service.get("Spec") or {}).get("Labels") or {})
        if any(key.lower().startswith(prefix) for key in labels):
            labelled[str(service.get("ID"))] = (service, labels)
    infos = []
    for task in tasks:
        found = labelled.get(str(task.get("ServiceID")))
        if found is None:
            continue
        service, labels = found[0], dict(found[1])
        name = str(service["Spec"].get("Name") or service.get("ID"))
        labels.setdefault(COMPOSE_PROJECT, labels.get(STACK_NAMESPACE, "swarm"))
        labels[COMPOSE_SERVICE] = name
        status = task.get("Status") or {}
        slot = task.get("Slot") or str(task.get("NodeID", ""))[:12]
        infos.append(
            ContainerInfo(
                id=str(task.get("ID")),
                name=f"{name}.{slot}",
                labels=labels,
                state="running" if status.get("State") == "running" else "exited",
                created=parse_time(str(task.get("CreatedAt") or "")),
                ports=_ports(service),
                engine=engine,
                node_address=addresses.get(str(task.get("NodeID")), fallback_address),
            )
        )
    return infos
